package activator

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"sluice.dev/sluice/events"
)

// inbox routes replies from workers to the requests waiting for them, over one
// wildcard subscription, so a request costs no subscription of its own.
// A reply that arrives after its request stopped waiting is counted and dropped.
type inbox struct {
	instance string
	next     atomic.Uint64
	late     func()

	mu      sync.Mutex // guards waiting
	waiting map[string]chan *nats.Msg
}

func newInbox(late func()) *inbox {
	return &inbox{instance: nuid.Next(), late: late, waiting: map[string]chan *nats.Msg{}}
}

// subscribe starts routing replies; the caller unsubscribes. Replies may be
// large and come in bursts: the subscription buffers up to 1 GiB of them
// rather than dropping any as a slow consumer.
func (i *inbox) subscribe(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(events.InstanceReplies(i.instance), i.deliver)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, 1<<30); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return sub, nil
}

// register returns the subject a reply for function must be sent to, the
// channel it arrives on, and a function to call when the caller stops waiting.
func (i *inbox) register(function string) (string, <-chan *nats.Msg, func()) {
	token := strconv.FormatUint(i.next.Add(1), 36)
	ch := make(chan *nats.Msg, 1)
	i.mu.Lock()
	i.waiting[token] = ch
	i.mu.Unlock()
	return events.ReplySubject(function, i.instance, token), ch, func() {
		i.mu.Lock()
		delete(i.waiting, token)
		i.mu.Unlock()
	}
}

func (i *inbox) deliver(msg *nats.Msg) {
	token := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
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
