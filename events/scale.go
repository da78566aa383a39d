package events

import (
	"context"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// PokeSubject is where the activator asks the autoscaler to wake a revision:
// the message body is its ScaleKey, or a function's name alone for its
// current revision. Pokes are idempotent and cheap.
const PokeSubject = "sluice.autoscaler.poke"

// ScaleBucket holds the autoscaler's last word on each revision, keyed by
// ScaleKey: what the activator reads to know a function is at zero, and what
// `sluice status` shows.
const ScaleBucket = "sluice-scale"

// ScaleKey is the key of one revision in ScaleBucket.
func ScaleKey(function, revision string) string { return function + "." + revision }

// ScaleStatus is the autoscaler's view of one revision.
type ScaleStatus struct {
	Function string    `json:"function"`
	Revision string    `json:"revision"`
	Desired  int       `json:"desired"`
	Ready    int       `json:"ready"`
	Depth    int64     `json:"depth"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// EnsureScaleBucket creates the scale status bucket if it does not exist.
func EnsureScaleBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return OpenOrCreateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      ScaleBucket,
		Description: "Sluice autoscaler status per function revision",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
}

// ScaleEventSubject is where the autoscaler announces each scale decision of a
// function as a CloudEvent of type TypeScalePrefix + direction (up, down,
// from_zero, to_zero), with a ScaleStatus as data.
func ScaleEventSubject(function string) string { return EventsSubjectPrefix + ".scale." + function }

// TypeScalePrefix starts the type of every scale decision event.
const TypeScalePrefix = "dev.sluice.scale."

// PublishScaleEvent announces a scale decision on ScaleEventSubject.
func PublishScaleEvent(ctx context.Context, nc *nats.Conn, direction string, status ScaleStatus) error {
	ev := event.New()
	ev.SetID(nuid.Next())
	ev.SetSource("/sluice/autoscaler")
	ev.SetType(TypeScalePrefix + direction)
	ev.SetSubject(status.Function + "/" + status.Revision)
	ev.SetTime(status.At)
	if err := ev.SetData("application/json", status); err != nil {
		return err
	}
	msg := nats.NewMsg(ScaleEventSubject(status.Function))
	if err := WriteEvent(ctx, msg, &ev); err != nil {
		return err
	}
	return nc.PublishMsg(msg)
}
