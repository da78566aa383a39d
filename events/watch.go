package events

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// WatchBucket calls apply for every key of kv and then for every change,
// with the entry's revision, until ctx ends; a deleted or purged key comes
// with a nil value. synced is
// called once, when every key present at the start has been applied.
func WatchBucket(ctx context.Context, kv jetstream.KeyValue, apply func(key string, value []byte, revision uint64), synced func()) error {
	watcher, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer watcher.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-watcher.Updates():
			switch {
			case !ok && ctx.Err() != nil:
				return nil // the watcher closes its channel when ctx ends, and may win the select
			case !ok:
				return fmt.Errorf("watch of %s closed", kv.Bucket())
			case entry == nil:
				synced()
			case entry.Operation() == jetstream.KeyValuePut:
				apply(entry.Key(), entry.Value(), entry.Revision())
			default:
				apply(entry.Key(), nil, entry.Revision())
			}
		}
	}
}
