package activator

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// inbox routes replies from workers to the requests waiting for them, over one
// wildcard subscription, so a request costs no subscription of its own.
// A reply that arrives after its request stopped waiting is counted and dropped.
type inbox struct {
	prefix string
	next   atomic.Uint64
	late   func()

	mu      sync.Mutex // guards waiting
	waiting map[string]chan *nats.Msg
}

func newInbox(late func()) *inbox {
	return &inbox{prefix: nats.NewInbox() + ".", late: late, waiting: map[string]chan *nats.Msg{}}
}

// subscribe starts routing replies; the caller unsubscribes. Replies may be
// large and come in bursts: the subscription buffers up to 1 GiB of them
// rather than dropping any as a slow consumer.
func (i *inbox) subscribe(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(i.prefix+"*", i.deliver)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, 1<<30); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return sub, nil
}

// register returns the subject a reply must be sent to, the channel it arrives
// on, and a function to call when the caller stops waiting.
func (i *inbox) register() (string, <-chan *nats.Msg, func()) {
	token := strconv.FormatUint(i.next.Add(1), 36)
	ch := make(chan *nats.Msg, 1)
	i.mu.Lock()
	i.waiting[token] = ch
	i.mu.Unlock()
	return i.prefix + token, ch, func() {
		i.mu.Lock()
		delete(i.waiting, token)
		i.mu.Unlock()
	}
}

func (i *inbox) deliver(msg *nats.Msg) {
	token := msg.Subject[len(i.prefix):]
	i.mu.Lock()
	ch, ok := i.waiting[token]
	delete(i.waiting, token)
	i.mu.Unlock()
	if !ok {
		i.late()
		return
	}
	ch <- msg // buffered: never blocks, one reply per token
}
