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
// that each request held longer than a third of the ack wait is still being
// worked on, however long the model runs.
type held struct {
	mu    sync.Mutex
	since map[jetstream.Msg]time.Time
}

func newHeld() *held { return &held{since: make(map[jetstream.Msg]time.Time)} }

func (h *held) take(msg jetstream.Msg) {
	h.mu.Lock()
	h.since[msg] = time.Now()
	h.mu.Unlock()
}

func (h *held) release(msg jetstream.Msg) {
	h.mu.Lock()
	delete(h.since, msg)
	h.mu.Unlock()
}

// keepAlive sends InProgress, every interval until done is closed, for each
// request held for longer than interval.
func (h *held) keepAlive(interval time.Duration, done <-chan struct{}) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var due []jetstream.Msg
	for {
		select {
		case <-done:
			return
		case now := <-ticker.C:
			due = due[:0]
			h.mu.Lock()
			for msg, since := range h.since {
				if now.Sub(since) >= interval {
					due = append(due, msg)
				}
			}
			h.mu.Unlock()
			for _, msg := range due {
				_ = msg.InProgress() // a lost one is covered by the next tick
			}
		}
	}
}

// progressInterval is a third of the consumer's ack wait: two heartbeats fit
// in it, so one lost or late still leaves the request with its worker.
func progressInterval(consumer jetstream.Consumer) time.Duration {
	if info := consumer.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		return info.Config.AckWait / 3
	}
	return time.Second / 3
}
