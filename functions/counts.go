package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"sluice.dev/sluice/events"
)

// Counter keeps one process's running counts of the revisions it sees and
// writes them to the counts bucket every second, each under a key of its
// own, so processes never contend; ReadCounts sums them.
type Counter struct {
	kv      jetstream.KeyValue
	process string

	mu     sync.Mutex // guards counts and dirty
	counts map[revisionKey]Counts
	dirty  map[revisionKey]bool
}

type revisionKey struct{ function, revision string }

// NewCounter returns a Counter writing to kv; Run writes.
func NewCounter(kv jetstream.KeyValue) *Counter {
	return &Counter{kv: kv, process: nuid.Next(), counts: map[revisionKey]Counts{}, dirty: map[revisionKey]bool{}}
}

// Add counts delta for a revision of a function.
func (c *Counter) Add(function, revision string, delta Counts) {
	key := revisionKey{function, revision}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[key], c.dirty[key] = c.counts[key].Add(delta), true
}

// Run writes what changed every interval until ctx ends, then once more,
// and returns what that last write failed with. A write that fails while
// it runs is tried again at the next interval: counts are statistics, and
// NATS being away a while must not stop what they count.
func (c *Counter) Run(ctx context.Context, interval time.Duration) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return c.Flush(flushCtx)
		case <-ticker.C:
			_ = c.Flush(ctx)
		}
	}
}

// Flush writes the counts that changed since the last write.
func (c *Counter) Flush(ctx context.Context) error {
	c.mu.Lock()
	changed := make(map[revisionKey]Counts, len(c.dirty))
	for key := range c.dirty {
		changed[key] = c.counts[key]
	}
	clear(c.dirty)
	c.mu.Unlock()
	var errs []error
	for key, counts := range changed {
		value, _ := json.Marshal(counts)
		if _, err := c.kv.Put(ctx, events.CountsKey(key.function, key.revision, c.process), value); err != nil {
			c.mu.Lock()
			c.dirty[key] = true // written next time
			c.mu.Unlock()
			errs = append(errs, fmt.Errorf("write the counts of %s revision %s: %w", key.function, key.revision, err))
		}
	}
	return errors.Join(errs...)
}

// ReadCounts sums every process's counts of a revision.
func ReadCounts(ctx context.Context, kv jetstream.KeyValue, function, revision string) (Counts, error) {
	watcher, err := kv.Watch(ctx, events.CountsKeys(function, revision), jetstream.IgnoreDeletes())
	if err != nil {
		return Counts{}, fmt.Errorf("read the counts of %s revision %s: %w", function, revision, err)
	}
	defer func() { _ = watcher.Stop() }()
	var sum Counts
	for {
		select {
		case <-ctx.Done():
			return Counts{}, ctx.Err()
		case entry, ok := <-watcher.Updates():
			if !ok { // closed when ctx ends, possibly before ctx.Done is seen
				return Counts{}, fmt.Errorf("read the counts of %s revision %s: watch closed: %w", function, revision, context.Cause(ctx))
			}
			if entry == nil { // every current value has been read
				return sum, nil
			}
			var counts Counts
			if err := json.Unmarshal(entry.Value(), &counts); err == nil { // else written by a later version: skipped
				sum = sum.Add(counts)
			}
		}
	}
}
