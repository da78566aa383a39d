package events

import (
	"context"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// TypeModelChanged says the model store no longer holds the model a
// revision was deployed with; its data is a ModelChanged. It goes on
// IntegritySubject, on core NATS.
const TypeModelChanged = "dev.sluice.model.changed"

// ModelChanged is the data of a TypeModelChanged event.
type ModelChanged struct {
	Function string `json:"function"`
	Revision string `json:"revision"`
	Reason   string `json:"reason"`
}

// RevisionReportSubject is where a worker of function reports its
// revision's state to the control plane, which records it in the catalog.
func RevisionReportSubject(function string) string { return "sluice.control.revision." + function }

// PublishModelChanged announces that revision of function found its model changed.
func PublishModelChanged(ctx context.Context, nc *nats.Conn, function, revision, reason string) error {
	ev := event.New()
	ev.SetID(nuid.Next())
	ev.SetSource("/sluice/control")
	ev.SetType(TypeModelChanged)
	ev.SetSubject(function + "/" + revision)
	ev.SetTime(time.Now())
	if err := ev.SetData("application/json", ModelChanged{Function: function, Revision: revision, Reason: reason}); err != nil {
		return err
	}
	msg := nats.NewMsg(IntegritySubject(function))
	if err := WriteEvent(ctx, msg, &ev); err != nil {
		return err
	}
	return nc.PublishMsg(msg)
}
