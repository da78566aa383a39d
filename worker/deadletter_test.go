package worker_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/train"
)

// flakyResults is a results bucket that is down until fixed.
type flakyResults struct {
	mu       sync.Mutex
	down     bool
	failures int
	stored   map[string][][]byte
}

func (r *flakyResults) Put(_ context.Context, key string, value []byte) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		r.failures++
		return 0, errors.New("results bucket unavailable")
	}
	r.stored[key] = append(r.stored[key], value)
	return uint64(len(r.stored)), nil
}

func (r *flakyResults) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return nil, errors.New("results bucket unavailable")
	}
	values := r.stored[key]
	if len(values) == 0 {
		return nil, jetstream.ErrKeyNotFound
	}
	return storedEntry{key: key, value: values[len(values)-1]}, nil
}

// storedEntry is one value of flakyResults.
type storedEntry struct {
	jetstream.KeyValueEntry // only Key and Value are used
	key                     string
	value                   []byte
}

func (e storedEntry) Key() string   { return e.key }
func (e storedEntry) Value() []byte { return e.value }

func (r *flakyResults) fix() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = false
}

func (r *flakyResults) results(key string) (failures int, stored [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures, r.stored[key]
}

// asyncMsg is a request nobody waits for, as an asynchronous call publishes it.
func asyncMsg(t *testing.T, p *platform, id string, body []byte) *nats.Msg {
	t.Helper()
	msg := requestMsg(t, p.fn, id, body, "", time.Now().Add(time.Hour))
	msg.Header.Del(events.HeaderReplyTo)
	msg.Header.Set(events.HeaderRecord, "true")
	return msg
}

// deadLetters waits until the dead-letter stream holds n letters, and returns them.
func (p *platform) deadLetters(t *testing.T, n int) []events.DeadLetter {
	t.Helper()
	var letters []events.DeadLetter
	require.Eventually(t, func() bool {
		var err error
		letters, err = events.ListDeadLetters(context.Background(), p.js, p.fn.Metadata.Name)
		return err == nil && len(letters) == n
	}, waitFor, 5*time.Millisecond, "want %d dead letters, have %d", n, len(letters))
	return letters
}

// announcements receives the results announced on the function's results subject.
func (p *platform) announcements(t *testing.T) *inbox {
	t.Helper()
	announced := subscribe(t, p.client)
	sub, err := p.client.ChanSubscribe(events.ResultSubject(p.fn.Metadata.Name), announced.msgs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, p.client.Flush())
	return announced
}

// deployWithDeadLetters deploys the demo function with queue and makes the dead-letter stream.
func deployWithDeadLetters(t *testing.T, queue events.QueueConfig) *platform {
	t.Helper()
	p := deploy(t, irisSpec(t), irisFixture(t).model, queue)
	_, err := events.EnsureDeadLetterStream(t.Context(), p.js)
	require.NoError(t, err)
	return p
}

func TestWorkerDeadLettersRequestsNobodyWaitsFor(t *testing.T) {
	queue := events.DefaultQueueConfig()
	queue.MaxDeliver = 2
	p := deployWithDeadLetters(t, queue)
	store := &flakyResults{down: true, stored: map[string][][]byte{}}
	cfg := p.config()
	cfg.Results, cfg.JetStream = store, p.js
	w := p.start(t, cfg, p.sessions(t, 1))
	announced := p.announcements(t)

	// A synchronous caller with bad input is answered, and nothing is kept.
	in := subscribe(t, p.client)
	badBody := []byte(`{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`)
	p.publish(t, requestMsg(t, p.fn, "sync-bad", badBody, in.subject, time.Now().Add(time.Minute)))
	r := in.next(t)
	require.Equal(t, strconv.Itoa(http.StatusBadRequest), r.status, r.problem)
	p.streamEmpty(t)

	// A poison message nobody waits for is kept with its reason, at once.
	poison := asyncMsg(t, p, "poison", badBody)
	poison.Header.Del(events.HeaderRecord) // the store is down: only the bad input is at fault
	p.publish(t, poison)
	letter := p.deadLetters(t, 1)[0]
	require.Contains(t, letter.Reason, `inputs[0].name: model has no input "features"`)
	require.Equal(t, 1, letter.Attempts)
	require.Equal(t, p.fn.Status.Revision, letter.Revision)
	require.Equal(t, events.RequestSubject(p.fn.Metadata.Name, p.fn.Status.Revision), letter.Subject)
	require.Equal(t, badBody, letter.Data)
	p.streamEmpty(t)
	require.NoError(t, events.PurgeDeadLetters(t.Context(), p.js, p.fn.Metadata.Name))

	// A request that fails transiently on every allowed delivery is kept too.
	req, rows := irisRequest(t, "flaky", 5, 2)
	p.publish(t, asyncMsg(t, p, "flaky", body(t, req)))
	letter = p.deadLetters(t, 1)[0]
	require.Contains(t, letter.Reason, "gave up after 2 deliveries")
	require.Contains(t, letter.Reason, "results bucket unavailable")
	require.Equal(t, 2, letter.Attempts)
	p.streamEmpty(t)
	key := events.ResultKey("/sluice/activator", "flaky")
	failures, stored := store.results(key)
	require.Equal(t, 2, failures)
	require.Empty(t, stored)

	// Once the cause is fixed, the replay is scored and recorded once.
	store.fix()
	require.NoError(t, events.ReplayDeadLetter(t.Context(), p.js, letter.Seq))
	requireIrisAnswer(t, announced.next(t), rows)
	p.streamEmpty(t)
	announced.requireNoReply(t, p.client)
	_, stored = store.results(key)
	require.Len(t, stored, 1, "recorded exactly once")
	result, err := events.DecodeResult(stored[0])
	require.NoError(t, err)
	require.Equal(t, events.ResultDone, result.Status)
	require.Equal(t, "flaky", result.ID)
	left, err := events.ListDeadLetters(t.Context(), p.js, "")
	require.NoError(t, err)
	require.Empty(t, left, "the replayed dead letter is gone, and nothing else was kept")
	require.Equal(t, float64(2), counter(t, w.registry, "sluice_worker_dead_letters_total", "function", p.fn.Metadata.Name))
	in.requireNoReply(t, p.client)
}

func TestWorkerKeepsARequestItCannotDeadLetter(t *testing.T) {
	p := deployIris(t) // no dead-letter stream: publishing a dead letter fails
	cfg := p.config()
	cfg.JetStream = p.js
	w := p.start(t, cfg, p.sessions(t, 1))
	p.publish(t, asyncMsg(t, p, "poison", []byte(`{"inputs":`)))
	require.Eventually(t, func() bool { return w.logs.contains("dead letter") }, waitFor, 5*time.Millisecond)
	require.Equal(t, uint64(1), p.streamMsgs(t), "the request is not terminated")
}

func TestWorkerGivesUpARequestItsWorkersNeverSettled(t *testing.T) {
	queue := events.DefaultQueueConfig()
	queue.MaxDeliver, queue.AckWait = 2, time.Second
	p := deployWithDeadLetters(t, queue)
	req, _ := irisRequest(t, "crasher", 5, 1)
	p.publish(t, asyncMsg(t, p, "crasher", body(t, req)))

	// Two workers take the request and die holding it: it is delivered and
	// never settled, so it comes back after each ack wait.
	consumer, err := p.js.Consumer(t.Context(), events.StreamName(p.fn.Metadata.Name), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	require.Equal(t, 2, events.MaxDeliverOf(consumer.CachedInfo()))
	for delivery := 1; delivery <= queue.MaxDeliver; delivery++ {
		batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(3*queue.AckWait))
		require.NoError(t, err)
		msgs := 0
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			require.NoError(t, err)
			require.EqualValues(t, delivery, meta.NumDelivered)
			msgs++
		}
		require.Equal(t, 1, msgs, "delivery %d", delivery)
	}

	// The next worker does not run it again: it keeps it as a dead letter
	// and records the failure for whoever polls.
	store := &flakyResults{stored: map[string][][]byte{}}
	cfg := p.config()
	cfg.Results, cfg.JetStream = store, p.js
	w := p.start(t, cfg, p.sessions(t, 1))
	letter := p.deadLetters(t, 1)[0]
	require.Contains(t, letter.Reason, "gave up after 2 deliveries, the last never settled")
	require.Equal(t, 2, letter.Attempts)
	p.streamEmpty(t)
	_, stored := store.results(events.ResultKey("/sluice/activator", "crasher"))
	require.Len(t, stored, 1)
	result, err := events.DecodeResult(stored[0])
	require.NoError(t, err)
	require.Equal(t, events.ResultError, result.Status)
	require.Contains(t, result.Error, "never settled")
	count, _ := histogram(t, w.registry, "sluice_worker_batch_size", 1)
	require.Zero(t, count, "the model never ran")
	require.Equal(t, float64(1), counter(t, w.registry, "sluice_worker_requests_total", "outcome", "error"))
}

// A worker that recorded a result and stopped before acknowledging the
// request leaves it to be delivered again, past the limit even: the next
// worker announces the recorded answer again and acknowledges the request,
// without running it or dead-lettering it.
func TestWorkerAnswersARedeliveryFromTheRecordedResult(t *testing.T) {
	queue := events.DefaultQueueConfig()
	queue.MaxDeliver = 2
	p := deployWithDeadLetters(t, queue)
	req, rows := irisRequest(t, "recorded", 5, 2)
	p.publish(t, asyncMsg(t, p, "recorded", body(t, req)))

	// The first worker scores and records it on the last allowed delivery, then dies.
	key := events.ResultKey("/sluice/activator", "recorded")
	store := &flakyResults{stored: map[string][][]byte{}}
	answer := irisAnswerBody(t, rows)
	recorded := events.EncodeResult(events.Result{ID: "recorded", Source: "/sluice/activator", Status: events.ResultDone, Code: http.StatusOK, Response: answer})
	_, err := store.Put(t.Context(), key, recorded)
	require.NoError(t, err)
	consumer, err := p.js.Consumer(t.Context(), events.StreamName(p.fn.Metadata.Name), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	for range queue.MaxDeliver {
		batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(waitFor))
		require.NoError(t, err)
		for msg := range batch.Messages() {
			require.NoError(t, msg.Nak()) // back at once, as after an ack wait
		}
	}

	cfg := p.config()
	cfg.Results, cfg.JetStream = store, p.js
	announced := p.announcements(t)
	w := p.start(t, cfg, p.sessions(t, 1))
	requireIrisAnswer(t, announced.next(t), rows)
	p.streamEmpty(t)
	_, stored := store.results(key)
	require.Len(t, stored, 1, "the result is not written again")
	require.Equal(t, float64(1), counter(t, w.registry, "sluice_worker_requests_total", "outcome", "recorded"))
	count, _ := histogram(t, w.registry, "sluice_worker_batch_size", 1)
	require.Zero(t, count, "the model never ran")
	letters, err := events.ListDeadLetters(t.Context(), p.js, "")
	require.NoError(t, err)
	require.Empty(t, letters)
}

// irisAnswerBody is the JSON answer the demo model gives for rows.
func irisAnswerBody(t *testing.T, rows [][]float32) []byte {
	t.Helper()
	classifier := irisFixture(t).classifier
	classes := classifier.Classes()
	var probabilities []float32
	var labels []int64
	var names []string
	for _, row := range rows {
		want := classifier.PredictProba(row)
		label := slices.Index(want, slices.Max(want))
		probabilities, labels, names = append(probabilities, want...), append(labels, int64(label)), append(names, classes[label])
	}
	n := int64(len(rows))
	var outputs []oip.Tensor
	for _, output := range []struct {
		name  string
		shape []int64
		data  any
	}{{train.ProbabilitiesName, []int64{n, int64(len(classes))}, probabilities}, {train.LabelName, []int64{n}, labels}, {train.ClassName, []int64{n}, names}} {
		tensor, err := oip.NewTensor(output.name, output.shape, output.data)
		require.NoError(t, err)
		outputs = append(outputs, tensor)
	}
	body, err := oip.AppendInferenceResponse(nil, &oip.InferenceResponse{ModelName: "iris", Outputs: outputs})
	require.NoError(t, err)
	return body
}

// A recorded error does not answer a redelivery: it may be that of the
// request a dead letter replays, which runs again.
func TestWorkerRunsARedeliveryWhoseRecordedResultIsAnError(t *testing.T) {
	p := deployWithDeadLetters(t, events.DefaultQueueConfig())
	req, rows := irisRequest(t, "replayed", 5, 1)
	p.publish(t, asyncMsg(t, p, "replayed", body(t, req)))
	key := events.ResultKey("/sluice/activator", "replayed")
	store := &flakyResults{stored: map[string][][]byte{}}
	failed := events.EncodeResult(events.Result{ID: "replayed", Source: "/sluice/activator", Status: events.ResultError, Code: http.StatusInternalServerError, Error: "results bucket unavailable"})
	_, err := store.Put(t.Context(), key, failed)
	require.NoError(t, err)
	consumer, err := p.js.Consumer(t.Context(), events.StreamName(p.fn.Metadata.Name), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(waitFor))
	require.NoError(t, err)
	for msg := range batch.Messages() {
		require.NoError(t, msg.Nak())
	}

	cfg := p.config()
	cfg.Results, cfg.JetStream = store, p.js
	announced := p.announcements(t)
	p.start(t, cfg, p.sessions(t, 1))
	requireIrisAnswer(t, announced.next(t), rows)
	p.streamEmpty(t)
	_, stored := store.results(key)
	require.Len(t, stored, 2)
	result, err := events.DecodeResult(stored[1])
	require.NoError(t, err)
	require.Equal(t, events.ResultDone, result.Status)
}
