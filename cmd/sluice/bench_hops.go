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
	"os/exec"
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

// The stream, bucket, subjects and headers of the hops anchor.
const (
	hopsStream   = "hops"
	hopsBucket   = "hops-results"
	hopsRequests = "hops.req"
	hopsReplies  = "hops.reply."
	hopsReplyTo  = "Hops-Reply-To"
	hopsRecord   = "Hops-Record"
	// A request may also name the size of its answer (hopsAnswerBytes,
	// instead of hopsAnswer) and a subject the put answer is announced on
	// (hopsAnnounce): BenchmarkBatchScoring's queue alone (e2e) asks for both.
	hopsAnswerBytes = "Hops-Answer-Bytes"
	hopsAnnounce    = "Hops-Announce"
)

// hopsAnswer is what the hops anchor answers: an OIP response of one label.
var hopsAnswer = []byte(`{"model_name":"iris","outputs":[{"name":"label","shape":[1],"datatype":"INT64","data":[0]}]}`)

// hopsAnchor is the anchor of the synchronous and asynchronous throughputs:
// the hops a prediction makes, with none of Sluice's work, on the same two
// cores. withHops runs, in this process, an embedded nats-server with
// JetStream on disk and an HTTP server with JSON, as benchBareHTTP, which
// publishes each body to a work-queue stream (file storage, a Nats-Msg-Id)
// through an in-process connection, as `sluice up`'s activator does, and
// waits for the stored ack. A consumer process (this executable,
// --hops-consumer), as a worker, pulls on TCP, publishes the reply a
// synchronous request waits for on an inbox, and acks. Its targets: sync,
// async (202 once stored), and records, async with the records of an
// asynchronous request (a pending record created before the publish, the
// result put by the consumer).
type hopsAnchor struct {
	sync, async, records vegeta.Target
}

// withHops starts the hops anchor, hands it to use, and stops it once use
// returns.
func withHops(ctx context.Context, use func(hopsAnchor)) error {
	dir, err := os.MkdirTemp("", "sluice-bench-hops-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := embedded.DefaultConfig()
	cfg.Port, cfg.StoreDir = -1, dir
	srv, err := embedded.Start(cfg)
	if err != nil {
		return err
	}
	defer srv.WaitForShutdown()
	defer srv.Shutdown()
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stop, err := startHopsConsumer(ctx, srv.ClientURL())
	if err != nil {
		return err
	}
	defer stop()
	results, err := js.KeyValue(ctx, hopsBucket) // the consumer made it
	if err != nil {
		return err
	}

	replies := &hopsInbox{waiting: map[string]chan struct{}{}}
	sub, err := nc.Subscribe(hopsReplies+"*", replies.deliver)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := hopsRequest(r, js, results, replies)
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(hopsAnswer)
	}))
	defer server.Close()
	anchor := hopsAnchor{sync: postJSON(server.URL), async: preferAsync(postJSON(server.URL)), records: preferAsync(postJSON(server.URL))}
	anchor.records.Header.Set(hopsRecord, "true")
	use(anchor)
	return nil
}

// hopsRequest does the hops of one request of the anchor and says what to
// answer: it decodes the JSON body, records it as pending when asked,
// publishes it and waits for the stored ack, then, unless the caller asked
// not to wait, for the reply.
func hopsRequest(r *http.Request, js jetstream.JetStream, results jetstream.KeyValue, replies *hopsInbox) (int, error) {
	data, err := io.ReadAll(r.Body)
	var request map[string]any
	if err == nil {
		err = json.Unmarshal(data, &request)
	}
	if err != nil {
		return http.StatusBadRequest, err
	}
	id := nuid.Next()
	msg := nats.NewMsg(hopsRequests)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, id)
	async := r.Header.Get("Prefer") == "respond-async"
	if async && r.Header.Get(hopsRecord) != "" {
		if _, err := results.Create(r.Context(), id, []byte(`{"status":"pending"}`)); err != nil {
			return http.StatusServiceUnavailable, err
		}
		msg.Header.Set(hopsRecord, id)
	}
	var replied <-chan struct{}
	if !async {
		token, ch := replies.register()
		defer replies.forget(token)
		msg.Header.Set(hopsReplyTo, hopsReplies+token)
		replied = ch
	}
	ack, err := js.PublishMsgAsync(msg)
	if err != nil {
		return http.StatusServiceUnavailable, err
	}
	select {
	case <-ack.Ok():
	case err := <-ack.Err():
		return http.StatusServiceUnavailable, err
	}
	if async {
		return http.StatusAccepted, nil
	}
	select {
	case <-replied:
		return http.StatusOK, nil
	case <-time.After(30 * time.Second):
		return http.StatusGatewayTimeout, errors.New("no reply within 30s")
	}
}

// startHopsConsumer runs the anchor's consumer as a process of its own, as
// a worker is, and returns once it consumes.
func startHopsConsumer(ctx context.Context, natsURL string) (func(), error) {
	executable, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, executable, "bench", "--hops-consumer", natsURL)
	cmd.Stderr = os.Stderr
	ready, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	if _, err := io.ReadFull(ready, make([]byte, 1)); err != nil { // it writes one byte once it consumes
		stop()
		return nil, fmt.Errorf("the hops consumer did not start: %w", err)
	}
	return stop, nil
}

// hopsConsume is the anchor's consumer process: it makes the anchor's
// work-queue stream, its consumer and the results bucket unless they are
// there, pulls the anchor's requests, puts a result for each that asks (and
// announces it when asked), replies to each that waits, acks each, and says
// on stdout once it consumes; it stops when ctx ends (main's: on SIGINT).
func hopsConsume(ctx context.Context, natsURL string) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: hopsStream, Subjects: []string{hopsRequests},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil {
		return err
	}
	consumer, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: hopsStream, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return err
	}
	results, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: hopsBucket, History: 1, TTL: time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	var sized []byte // the answer of the size a request names: the same for every request of a run
	consuming, err := consumer.Consume(func(msg jetstream.Msg) {
		answer := hopsAnswer
		if size, err := strconv.Atoi(msg.Headers().Get(hopsAnswerBytes)); err == nil {
			if len(sized) != size {
				sized = make([]byte, size)
			}
			answer = sized
		}
		if key := msg.Headers().Get(hopsRecord); key != "" {
			announce := msg.Headers().Get(hopsAnnounce)
			go func() { // a put waits for the store: side by side, as a worker's
				if _, err := results.Put(ctx, key, answer); err != nil {
					_ = msg.Nak()
					return
				}
				if announce != "" {
					announcement := nats.NewMsg(announce)
					announcement.Header.Set(hopsRecord, key)
					announcement.Data = answer
					_ = nc.PublishMsg(announcement)
				}
				_ = msg.Ack()
			}()
			return
		}
		if reply := msg.Headers().Get(hopsReplyTo); reply != "" {
			_ = nc.Publish(reply, answer)
		}
		_ = msg.Ack()
	})
	if err != nil {
		return err
	}
	defer consuming.Stop()
	if _, err := os.Stdout.Write([]byte{'\n'}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
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
