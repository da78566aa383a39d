package events

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Lifecycle CloudEvents: what happens to a function's models, trainings and
// rollouts. Each goes on the subject of its kind and function (RetrainSubject,
// ModelSubject, RolloutSubject) and is kept in LifecycleStream.
const (
	// TypeRetrainRequested asks for a training of the function in its subject
	// (`sluice retrain`, or another system such as a drift monitor). Copies
	// of one event — the same id — start one training.
	TypeRetrainRequested = "dev.sluice.retrain.requested"
	// TypeRetrainPrefix starts the types of what a training does: started,
	// succeeded, failed.
	TypeRetrainPrefix = "dev.sluice.retrain."
	// TypeModelPublished says a trainer wrote a new model version to the
	// model store; its data is a ModelPublished.
	TypeModelPublished = "dev.sluice.model.published"
	// TypeRolloutPrefix starts the types of a rollout's events: stepped,
	// promoted, rolled_back.
	TypeRolloutPrefix = "dev.sluice.rollout."
	// TypeFeedback carries labelled rows for a function (HTTP or NATS); its
	// data is a Feedback.
	TypeFeedback = "dev.sluice.feedback"
	// TypeFeedbackAccepted answers a TypeFeedback CloudEvent sent over HTTP:
	// its id and how many rows were kept.
	TypeFeedbackAccepted = "dev.sluice.feedback.accepted"
)

// LifecycleStream keeps the lifecycle events for a week, so that the loops
// that act on them (retraining, publishing) miss none across restarts.
const LifecycleStream = "SLUICE_LIFECYCLE"

// RetrainSubject is where the training events of a function go.
func RetrainSubject(function string) string { return EventsSubjectPrefix + ".retrain." + function }

// ModelSubject is where the model events of a function go.
func ModelSubject(function string) string { return EventsSubjectPrefix + ".model." + function }

// RolloutSubject is where the rollout events of a function go.
func RolloutSubject(function string) string { return EventsSubjectPrefix + ".rollout." + function }

// ModelPublished is the data of a TypeModelPublished event: a new version of
// a function's model, in the model store.
type ModelPublished struct {
	Function string `json:"function"`
	// Object names the ONNX file in the model store.
	Object string `json:"object"`
	SHA256 string `json:"sha256"`
	// Parent is the revision the trainer started from, "" for none.
	Parent string `json:"parent,omitempty"`
	// Run names the training run that made it.
	Run string `json:"run,omitempty"`
}

// EnsureLifecycleStream opens the lifecycle stream, creating it if it does not exist.
func EnsureLifecycleStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return OpenOrCreateStream(ctx, js, jetstream.StreamConfig{
		Name:        LifecycleStream,
		Description: "Sluice lifecycle events: retraining, model versions, rollouts",
		Subjects:    []string{RetrainSubject("*"), ModelSubject("*"), RolloutSubject("*")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      7 * 24 * time.Hour,
		MaxBytes:    sized(ctx, js, 64<<20, 128),
		Duplicates:  10 * time.Minute,
	})
}

// Lifecycle is one lifecycle event to publish.
type Lifecycle struct {
	Subject string
	Type    string
	// Source is the component that publishes it, e.g. "/sluice/rollout".
	Source string
	// ID is the event's id; "" picks a new one. The stream stores one event
	// of an id within its duplicate window.
	ID string
	// About is the CloudEvent subject: the function, or function/revision.
	About string
	Data  any
}

// PublishLifecycle stores a lifecycle event in LifecycleStream.
func PublishLifecycle(ctx context.Context, js jetstream.JetStream, l Lifecycle) error {
	ev := event.New()
	if l.ID == "" {
		l.ID = nuid.Next()
	}
	ev.SetID(l.ID)
	ev.SetSource(l.Source)
	ev.SetType(l.Type)
	ev.SetSubject(l.About)
	ev.SetTime(time.Now())
	if err := ev.SetData("application/json", l.Data); err != nil {
		return err
	}
	msg := nats.NewMsg(l.Subject)
	if err := WriteEvent(ctx, msg, &ev); err != nil {
		return err
	}
	msg.Header.Set(HeaderMsgID, MsgID(l.Source, l.ID))
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s to %s: %w", l.Type, l.Subject, err)
	}
	return nil
}
