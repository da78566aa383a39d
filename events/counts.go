package events

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// CountsBucket holds what each process counted of each function revision's
// requests — a running total per process under CountsKey — for the rollout
// gates to sum.
const CountsBucket = "sluice-counts"

// FeedbackRevision is the revision token under which all of a function's
// feedback rows are counted, whichever revision answered them.
const FeedbackRevision = "feedback"

// CountsKey is the key of one process's counts of one revision.
func CountsKey(function, revision, process string) string {
	return function + "." + revision + "." + process
}

// CountsKeys matches every process's counts of one revision.
func CountsKeys(function, revision string) string { return function + "." + revision + ".*" }

// EnsureCountsBucket creates the counts bucket if it does not exist.
func EnsureCountsBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return OpenOrCreateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      CountsBucket,
		Description: "Sluice request counts per function revision and process",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
}
