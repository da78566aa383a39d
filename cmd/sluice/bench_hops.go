package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"sluice.dev/sluice/events/embedded"
)

// The subjects of the hops anchor's own stream.
const (
	hopsRequests = "hops.req"
	hopsReplies  = "hops.reply."
	hopsReplyTo  = "Hops-Reply-To"
)

// benchHops is the anchor of the synchronous and asynchronous throughputs:
// the hops a prediction makes, with none of Sluice's work. An HTTP server
// with JSON, as benchBareHTTP, publishes each body to a JetStream stream
// (file storage, work queue, a Nats-Msg-Id, through an in-process
// connection, as `sluice up`'s activator does) and waits for the stored
// ack; a synchronous request then waits for its reply on an inbox, which a
// pull consumer on a TCP connection (as a worker's) publishes before it
// acks. Server, consumer and load generator share this process and its two
// cores, so it is a floor: the platform adds its routing, CloudEvents,
// model and processes on top.
func benchHops(body string, concurrency int, duration time.Duration) ([]benchRow, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sluice-bench-hops-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := embedded.DefaultConfig()
	cfg.Port, cfg.StoreDir = -1, dir
	srv, err := embedded.Start(cfg)
	if err != nil {
		return nil, err
	}
	defer srv.WaitForShutdown()
	defer srv.Shutdown()
	front, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		return nil, err
	}
	defer front.Close()
	back, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return nil, err
	}
	defer back.Close()
	js, err := jetstream.New(front)
	if err != nil {
		return nil, err
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "hops", Subjects: []string{hopsRequests},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil {
		return nil, err
	}
	if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "hops", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		return nil, err
	}
	answer, err := json.Marshal(map[string]any{"model_name": "iris", "outputs": []any{map[string]any{"name": "label", "data": []int{0}}}})
	if err != nil {
		return nil, err
	}
	backJS, err := jetstream.New(back)
	if err != nil {
		return nil, err
	}
	backConsumer, err := backJS.Consumer(ctx, "hops", "hops")
	if err != nil {
		return nil, err
	}
	consuming, err := backConsumer.Consume(func(msg jetstream.Msg) {
		if reply := msg.Headers().Get(hopsReplyTo); reply != "" {
			_ = back.Publish(reply, answer)
		}
		_ = msg.Ack()
	})
	if err != nil {
		return nil, err
	}
	defer consuming.Stop()

	replies := &hopsInbox{waiting: map[string]chan struct{}{}}
	sub, err := front.Subscribe(hopsReplies+"*", replies.deliver)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		var request map[string]any
		if err == nil {
			err = json.Unmarshal(data, &request)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msg := nats.NewMsg(hopsRequests)
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, nuid.Next())
		async := r.Header.Get("Prefer") == "respond-async"
		var replied <-chan struct{}
		if !async {
			token, ch := replies.register()
			defer replies.forget(token)
			msg.Header.Set(hopsReplyTo, hopsReplies+token)
			replied = ch
		}
		ack, err := js.PublishMsgAsync(msg)
		if err == nil {
			select {
			case <-ack.Ok():
			case err = <-ack.Err():
			}
		}
		if err == nil && !async {
			select {
			case <-replied:
			case <-time.After(30 * time.Second):
				err = errors.New("no reply")
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if async {
			w.WriteHeader(http.StatusAccepted)
		}
		_ = json.NewEncoder(w).Encode(json.RawMessage(answer))
	}))
	defer server.Close()
	target := vegeta.Target{Method: http.MethodPost, URL: server.URL, Body: []byte(body), Header: http.Header{"Content-Type": {"application/json"}}}
	sync := attack(target, concurrency, duration, fmt.Sprintf("hops alone: HTTP, JetStream publish, pull, reply, ack (the sync anchor), concurrency %d", concurrency))
	target.Header = http.Header{"Content-Type": {"application/json"}, "Prefer": {"respond-async"}}
	async := attack(target, concurrency, duration, fmt.Sprintf("hops alone: HTTP, JetStream publish, 202 (the async anchor), concurrency %d", concurrency))
	return []benchRow{sync, async}, nil
}

// hopsInbox hands each reply of the hops anchor to the request waiting for it.
type hopsInbox struct {
	next    atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

func (i *hopsInbox) register() (string, <-chan struct{}) {
	token := strconv.FormatUint(i.next.Add(1), 36)
	ch := make(chan struct{}, 1)
	i.mu.Lock()
	i.waiting[token] = ch
	i.mu.Unlock()
	return token, ch
}

func (i *hopsInbox) forget(token string) {
	i.mu.Lock()
	delete(i.waiting, token)
	i.mu.Unlock()
}

func (i *hopsInbox) deliver(msg *nats.Msg) {
	token := msg.Subject[len(hopsReplies):]
	i.mu.Lock()
	ch := i.waiting[token]
	i.mu.Unlock()
	if ch != nil {
		ch <- struct{}{}
	}
}
