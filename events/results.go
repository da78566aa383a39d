package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ResultsBucket keeps the result of every recorded request (asynchronous
// calls, batch jobs, direct NATS publishers that ask for it) for a TTL.
const ResultsBucket = "sluice-results"

// HeaderRecord on a request, set to "true", asks the worker to record the
// result in ResultsBucket and publish it on the function's ResultSubject
// before it acknowledges the request.
const HeaderRecord = "Sluice-Record"

// Statuses of a Result.
const (
	ResultPending = "pending"
	ResultDone    = "done"
	ResultError   = "error"
)

// Result is the record of one request in ResultsBucket.
type Result struct {
	ID       string `json:"id"`
	Source   string `json:"source"`
	Function string `json:"function"`
	Revision string `json:"revision,omitempty"`
	Status   string `json:"status"`
	// Code is the HTTP status a synchronous call would have answered.
	Code int `json:"code,omitempty"`
	// Response is the Open Inference Protocol answer, when Status is done.
	Response    json.RawMessage `json:"response,omitempty"`
	Error       string          `json:"error,omitempty"`
	SubmittedAt time.Time       `json:"submittedAt,omitzero"`
	CompletedAt time.Time       `json:"completedAt,omitzero"`
}

// ResultKey is the key of a request's Result: CloudEvents are unique by
// source and id, and a KV key may not hold every character an id may.
func ResultKey(source, id string) string {
	sum := sha256.Sum256([]byte(MsgID(source, id)))
	return hex.EncodeToString(sum[:20])
}

// DefaultResultTTL is how long results are kept.
const DefaultResultTTL = 24 * time.Hour

// EnsureResultsBucket opens the results bucket, creating it with ttl if it
// does not exist yet; an existing bucket keeps the TTL it was made with.
func EnsureResultsBucket(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, ResultsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      ResultsBucket,
			Description: "Sluice request results",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another process made it meanwhile
			kv, err = js.KeyValue(ctx, ResultsBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", ResultsBucket, err)
	}
	return kv, nil
}

// ResultsStream keeps the result announcements of every function
// (sluice.fn.<name>.res) so that sink delivery survives restarts.
const ResultsStream = "SLUICE_RESULTS"

// HeaderSinkURI on a request names where its result is delivered as a
// CloudEvent by HTTP POST; the worker copies it onto the result announcement.
const HeaderSinkURI = "Sluice-Sink-URI"

// EnsureResultsStream creates or updates the stream of result announcements.
func EnsureResultsStream(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.Stream, error) {
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        ResultsStream,
		Description: "Sluice result announcements, for streaming consumers and sink delivery",
		Subjects:    []string{"sluice.fn.*.res"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      ttl,
		MaxBytes:    1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", ResultsStream, err)
	}
	return stream, nil
}
