package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PokeSubject is where the activator asks the autoscaler to wake a function:
// the message body is the function's name. Pokes are idempotent and cheap.
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
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ScaleBucket,
		Description: "Sluice autoscaler status per function revision",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", ScaleBucket, err)
	}
	return kv, nil
}
