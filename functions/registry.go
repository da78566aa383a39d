package functions

import (
	"context"
	"sync"

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
	return events.WatchBucket(ctx, r.catalog.kv, r.apply, r.markSynced)
}

func (r *Registry) markSynced() {
	select {
	case <-r.synced:
	default:
		close(r.synced)
	}
}

// apply records a put (value set) or a delete (value nil) of one Function.
func (r *Registry) apply(name string, value []byte) {
	var fn *Function
	if value != nil {
		decoded, err := decodeFunction(value)
		if err != nil {
			return // a value this version cannot read is skipped, not fatal
		}
		fn = decoded
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if fn == nil {
		delete(r.functions, name)
		return
	}
	r.functions[name] = fn
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
