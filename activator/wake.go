package activator

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"sluice.dev/sluice/events"
)

// pokeInterval is the least time between two pokes for the same function.
const pokeInterval = 250 * time.Millisecond

// waker follows the autoscaler's status bucket to know which revisions have
// no ready replica, and pokes the autoscaler when a request arrives for one,
// so it wakes at once instead of at its next tick.
type waker struct {
	nc *nats.Conn

	mu       sync.Mutex // guards ready and lastPoke
	ready    map[string]int
	lastPoke map[string]time.Time
}

func newWaker(nc *nats.Conn) *waker {
	return &waker{nc: nc, ready: map[string]int{}, lastPoke: map[string]time.Time{}}
}

// apply records one status entry of the scale bucket (nil: deleted).
func (w *waker) apply(key string, value []byte, _ uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if value == nil {
		delete(w.ready, key)
		return
	}
	var status events.ScaleStatus
	if err := json.Unmarshal(value, &status); err == nil {
		w.ready[key] = status.Ready
	}
}

// wake reports whether the revision has no ready replica, and if so pokes the
// autoscaler, at most once per pokeInterval per revision.
func (w *waker) wake(function, revision string) bool {
	key := events.ScaleKey(function, revision)
	now := time.Now()
	w.mu.Lock()
	if w.ready[key] > 0 {
		w.mu.Unlock()
		return false
	}
	poke := now.Sub(w.lastPoke[key]) >= pokeInterval
	if poke {
		w.lastPoke[key] = now
	}
	w.mu.Unlock()
	if poke {
		_ = w.nc.Publish(events.PokeSubject, []byte(key))
	}
	return true
}
