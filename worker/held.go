package worker

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// held is every request a worker holds, from its delivery to its
// settlement: waiting for a batch, in one, or being answered. The consumer's
// ack wait is short (events.QueueConfig.AckWait), so that a request held by a
// worker that died goes to a live one within seconds; held tells JetStream
// every fifth of it that each request held since the tick before is still
// being worked on, however long the model runs.
type held struct {
	mu sync.Mutex
	// msgs maps each request held to whether it was held at the last tick.
	msgs map[jetstream.Msg]bool
}

func newHeld() *held { return &held{msgs: make(map[jetstream.Msg]bool)} }

func (h *held) take(msg jetstream.Msg) {
	h.mu.Lock()
	h.msgs[msg] = false
	h.mu.Unlock()
}

// release forgets msg; call it before settling msg, so that no heartbeat
// follows its settlement (one would undo a delayed nak).
func (h *held) release(msg jetstream.Msg) {
	h.mu.Lock()
	delete(h.msgs, msg)
	h.mu.Unlock()
}

// keepAlive sends InProgress, every interval until done is closed, for each
// request that was already held at the tick before: the first one at most
// two intervals after its delivery.
func (h *held) keepAlive(interval time.Duration, done <-chan struct{}) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
			h.mu.Lock() // held while sending: a request released meanwhile gets none
			for msg, seen := range h.msgs {
				if seen {
					_ = msg.InProgress() // a lost one is covered by the next tick
				}
				h.msgs[msg] = true
			}
			h.mu.Unlock()
		}
	}
}

// progressInterval is a fifth of the consumer's ack wait: a request's first
// heartbeat comes within two fifths of it, and one lost still leaves time
// for the next.
func progressInterval(consumer jetstream.Consumer) time.Duration {
	if info := consumer.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		return info.Config.AckWait / 5
	}
	return 300 * time.Millisecond
}
