package functions

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
)

// Registry is an in-memory view of the catalog that follows every change, so
// the request path reads a map instead of the KV bucket.
type Registry struct {
	catalog *Catalog

	mu        sync.RWMutex // guards functions
	functions map[string]*Function
	synced    chan struct{}
}

// NewRegistry returns a Registry; Run fills it and keeps it current.
func NewRegistry(catalog *Catalog) *Registry {
	return &Registry{catalog: catalog, functions: map[string]*Function{}, synced: make(chan struct{})}
}

// Run watches the catalog until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	watcher, err := r.catalog.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("registry: watch %s: %w", events.FunctionsBucket, err)
	}
	defer watcher.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-watcher.Updates():
			if !ok {
				return fmt.Errorf("registry: watch of %s closed", events.FunctionsBucket)
			}
			r.apply(entry)
		}
	}
}

func (r *Registry) apply(entry jetstream.KeyValueEntry) {
	if entry == nil { // every existing entry has been delivered
		select {
		case <-r.synced:
		default:
			close(r.synced)
		}
		return
	}
	var fn *Function
	if entry.Operation() == jetstream.KeyValuePut {
		decoded, err := decodeFunction(entry.Value())
		if err != nil {
			return // a value this version cannot read is skipped, not fatal
		}
		fn = decoded
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if fn == nil {
		delete(r.functions, entry.Key())
		return
	}
	r.functions[entry.Key()] = fn
}

// Synced is closed once every Function present at start has been read.
func (r *Registry) Synced() <-chan struct{} { return r.synced }

// Lookup returns the named Function. The result is shared: do not modify it.
func (r *Registry) Lookup(name string) (*Function, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn, ok := r.functions[name]
	return fn, ok
}

// Names returns the names of every known Function.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.functions))
	for name := range r.functions {
		names = append(names, name)
	}
	return names
}
