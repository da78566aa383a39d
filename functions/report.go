package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"sluice.dev/sluice/events"
)

// ErrModelChanged says the model store does not hold the model a revision
// was deployed with: its object was replaced outside the control plane.
// The revision does not serve it.
var ErrModelChanged = errors.New("the model store does not hold the model this revision was deployed with")

// RevisionReport is what a worker found of its revision's model, for the
// control plane to record: a worker may not write the catalog.
type RevisionReport struct {
	Function string        `json:"function"`
	Revision string        `json:"revision"`
	State    RevisionState `json:"state"`
	Reason   string        `json:"reason,omitempty"`
	// ModelChanged is set when the model was replaced outside the control plane.
	ModelChanged bool `json:"modelChanged,omitempty"`
}

// revisionReports is the queue group of the control plane's replicas that
// record reports: one of them records each.
const revisionReports = "sluice-control"

// Report sends report to the control plane and retries until one replica
// has recorded it or ctx ends.
func Report(ctx context.Context, nc *nats.Conn, report RevisionReport, log *slog.Logger) error {
	data, err := json.Marshal(report)
	if err != nil {
		return err
	}
	for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, 10*time.Second) {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := nc.RequestWithContext(attempt, events.RevisionReportSubject(report.Function), data)
		cancel()
		if err == nil && len(reply.Data) == 0 {
			return nil
		}
		if err == nil {
			err = errors.New(string(reply.Data))
		}
		log.Warn("report the revision's state to the control plane; retrying", "function", report.Function,
			"revision", report.Revision, "state", report.State, "error", err, "after", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// RecordReports records the workers' reports in the catalog until ctx ends:
// the revision's state and reason, and for a model changed outside the
// control plane an error in the log and a dev.sluice.model.changed event
// on events.IntegritySubject.
func (c *Catalog) RecordReports(ctx context.Context, nc *nats.Conn, log *slog.Logger) error {
	sub, err := nc.QueueSubscribe(events.RevisionReportSubject("*"), revisionReports, func(msg *nats.Msg) {
		answer := []byte(nil)
		if err := c.record(ctx, nc, msg, log); err != nil {
			answer = []byte(err.Error())
		}
		_ = msg.Respond(answer)
	})
	if err != nil {
		return fmt.Errorf("subscribe to revision reports: %w", err)
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}

func (c *Catalog) record(ctx context.Context, nc *nats.Conn, msg *nats.Msg, log *slog.Logger) error {
	var report RevisionReport
	if err := json.Unmarshal(msg.Data, &report); err != nil {
		return fmt.Errorf("revision report: %w", err)
	}
	// The subject says which function's worker sent it: its permissions
	// allow that function's subject only, whatever the body says.
	if msg.Subject != events.RevisionReportSubject(report.Function) {
		return fmt.Errorf("a report of function %q sent on %s", report.Function, msg.Subject)
	}
	if report.ModelChanged {
		log.Error("model changed outside the control plane: the revision does not serve it", "function", report.Function,
			"revision", report.Revision, "reason", report.Reason)
		if err := events.PublishModelChanged(ctx, nc, report.Function, report.Revision, report.Reason); err != nil {
			log.Warn("announce a changed model", "function", report.Function, "error", err)
		}
	}
	return c.SetRevisionState(ctx, report.Function, report.Revision, report.State, report.Reason)
}
