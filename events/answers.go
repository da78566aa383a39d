package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AnswersStore is the object store that carries answers too large for one
// NATS message: the worker puts the answer there and the reply, the
// announced result and the recorded Result name the object instead of
// holding the answer. A synchronous caller's activator deletes the object
// once it has read it; the others expire with the results.
const AnswersStore = "sluice-answers"

// HeaderAnswerObject on a reply or an announced result names the object of
// AnswersStore that holds its data.
const HeaderAnswerObject = "Sluice-Answer-Object"

// DefaultMaxAnswerBytes bounds one answer: larger ones are refused with
// ErrAnswerTooLarge.
const DefaultMaxAnswerBytes = 256 << 20

// ErrAnswerTooLarge says an answer is over the limit of what the platform
// carries (HTTP 413).
var ErrAnswerTooLarge = errors.New("answer too large")

// EnsureAnswersStore opens the answers store, creating it with ttl if it does
// not exist yet.
func EnsureAnswersStore(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.ObjectStore, error) {
	return OpenOrCreateObjectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket:      AnswersStore,
		Description: "Sluice answers too large for one NATS message",
		TTL:         ttl,
		MaxBytes:    sized(ctx, js, -1, 8),
		Storage:     jetstream.FileStorage,
	})
}

// ReadAnswer returns the answer kept in store, AnswersStore, under name, and
// removes it when remove is set (the one reader of a synchronous answer does).
func ReadAnswer(ctx context.Context, store jetstream.ObjectStore, name string, remove bool) ([]byte, error) {
	data, err := store.GetBytes(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read answer %s: %w", name, err)
	}
	if remove {
		_ = store.Delete(ctx, name) // else it expires
	}
	return data, nil
}
