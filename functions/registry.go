package functions

import (
	"context"
	"errors"
	"sync"
	"time"

	"sluice.dev/sluice/events"
)

// Registry is an in-memory view of the catalog that follows every change, so
// the request path reads a map instead of the KV bucket.
type Registry struct {
	catalog *Catalog

	mu        sync.RWMutex // guards functions
	functions map[string]entry
	synced    chan struct{}
}

// entry is a Function as of one KV revision of its key.
type entry struct {
	fn       *Function
	revision uint64
}

// NewRegistry returns a Registry; Run fills it and keeps it current.
func NewRegistry(catalog *Catalog) *Registry {
	return &Registry{catalog: catalog, functions: map[string]entry{}, synced: make(chan struct{})}
}

// pruneEvery is how often the registry looks for Functions that left the
// catalog without a trace the watch sees: the bucket's stream purged.
var pruneEvery = 10 * time.Second

// Run watches the catalog until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	go events.Every(ctx, pruneEvery, func() { r.prune(ctx) })
	return events.WatchBucket(ctx, r.catalog.kv, r.apply, r.markSynced)
}

// prune forgets the Functions the catalog no longer holds. A delete leaves a
// marker the watch brings; a purge of the bucket's stream leaves none.
func (r *Registry) prune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, pruneEvery)
	defer cancel()
	present := map[string]bool{}
	lister, err := r.catalog.kv.ListKeys(ctx)
	if err != nil {
		return
	}
	for name := range lister.Keys() {
		present[name] = true
	}
	_ = lister.Stop()
	for _, name := range r.Names() {
		if present[name] {
			continue
		}
		r.mu.RLock()
		held := r.functions[name]
		r.mu.RUnlock()
		if _, _, err := r.catalog.entry(ctx, name); !errors.Is(err, ErrNotFound) {
			continue // put since the listing, or the catalog did not answer
		}
		r.mu.Lock()
		if r.functions[name] == held { // not put again meanwhile
			delete(r.functions, name)
		}
		r.mu.Unlock()
	}
}

func (r *Registry) markSynced() {
	select {
	case <-r.synced:
	default:
		close(r.synced)
	}
}

// apply records a put (value set) or a delete (value nil) of one Function at
// KV revision revision, unless the registry already holds a later one.
func (r *Registry) apply(name string, value []byte, revision uint64) {
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
	if held, ok := r.functions[name]; ok && held.revision >= revision {
		return
	}
	if fn == nil {
		delete(r.functions, name)
		return
	}
	r.functions[name] = entry{fn: fn, revision: revision}
}

// Synced is closed once every Function present at start has been read.
func (r *Registry) Synced() <-chan struct{} { return r.synced }

// Lookup returns the named Function. The result is shared: do not modify it.
func (r *Registry) Lookup(name string) (*Function, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	held, ok := r.functions[name]
	return held.fn, ok
}

// Refresh reads the named Function from the catalog itself, for a caller that
// did not find in the view what a deploy that has returned wrote: the watch
// may not have brought it yet. What it reads is kept in the view.
func (r *Registry) Refresh(ctx context.Context, name string) (*Function, bool, error) {
	if events.ValidateName(name) != nil { // no function has it: not a key to look up
		return nil, false, nil
	}
	fn, revision, err := r.catalog.entry(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if held, ok := r.functions[name]; ok && held.revision >= revision {
		return held.fn, true, nil
	}
	r.functions[name] = entry{fn: fn, revision: revision}
	return fn, true, nil
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
