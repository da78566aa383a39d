package worker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/train"
	"sluice.dev/sluice/worker"
)

// answers counts the distinct requests answered on an inbox, checking each
// answer, until the test ends.
type answers struct {
	mu       sync.Mutex
	answered map[string]int
	wrong    []string
}

func (a *answers) count() (distinct, total int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.answered {
		total += n
	}
	return len(a.answered), total
}

// listen answers for requests whose ids are keys of want, whose values are
// the first iris row of each; it stops when the test ends.
func listen(t *testing.T, in *inbox, want map[string][][]float32) *answers {
	t.Helper()
	a := &answers{answered: map[string]int{}}
	done := make(chan struct{})
	var listening sync.WaitGroup
	listening.Go(func() {
		for {
			select {
			case msg := <-in.msgs:
				a.record(msg, want)
			case <-done:
				return
			}
		}
	})
	t.Cleanup(func() {
		close(done)
		listening.Wait()
		require.Empty(t, a.wrong[:min(len(a.wrong), 5)], "%d wrong answers, the first shown", len(a.wrong))
	})
	return a
}

func (a *answers) record(msg *nats.Msg, want map[string][][]float32) {
	r, err := parseReply(msg)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.wrong = append(a.wrong, err.Error())
		return
	}
	a.answered[r.requestID]++
	if problem := checkAnswer(r, want[r.requestID]); problem != "" {
		a.wrong = append(a.wrong, r.requestID+": "+problem)
	}
}

// checkAnswer says what is wrong with a reply, or "" when it is right. It
// runs off the test goroutine, so it reports instead of failing the test.
func checkAnswer(r reply, rows [][]float32) string {
	if rows == nil {
		return "answer to an unknown request"
	}
	if r.eventType != events.TypeInferenceResponse {
		return fmt.Sprintf("error reply %s: %s", r.status, r.problem)
	}
	fixture, err := loadIris()
	if err != nil {
		return err.Error()
	}
	classes := len(fixture.classifier.Classes())
	for _, output := range r.response.Outputs {
		if output.Name != train.ProbabilitiesName {
			continue
		}
		got, ok := output.Data.([]float32)
		if !ok || len(got) != len(rows)*classes {
			return fmt.Sprintf("probabilities of shape %v for %d rows", output.Shape, len(rows))
		}
		for i, row := range rows {
			for class, p := range fixture.classifier.PredictProba(row) {
				if d := got[i*classes+class] - p; d > 1e-5 || d < -1e-5 {
					return fmt.Sprintf("row %d class %d: %v, want %v", i, class, got[i*classes+class], p)
				}
			}
		}
		return ""
	}
	return "no probabilities"
}

// syncRequests makes n requests answered on in, request i of rows(i) rows,
// and the rows each request id wants answered.
func syncRequests(t *testing.T, p *platform, in *inbox, n int, rows func(i int) int) ([]*nats.Msg, map[string][][]float32) {
	t.Helper()
	want := map[string][][]float32{}
	msgs := make([]*nats.Msg, n)
	for i := range msgs {
		id := fmt.Sprintf("request-%04d", i)
		req, wantRows := irisRequest(t, id, i, rows(i))
		want[id] = wantRows
		msgs[i] = requestMsg(t, p.fn, id, body(t, req), in.subject, time.Now().Add(time.Minute))
	}
	return msgs, want
}

// answerTheRest starts a worker with cfg and waits until all requests are
// answered, each once, and the stream is empty.
func (p *platform) answerTheRest(t *testing.T, cfg worker.Config, got *answers, requests int) {
	t.Helper()
	p.start(t, cfg, p.sessions(t, 1))
	require.Eventually(t, func() bool {
		answered, _ := got.count()
		return answered == requests
	}, waitFor, 5*time.Millisecond)
	p.streamEmpty(t)
	distinct, total := got.count()
	require.Equal(t, distinct, total, "requests answered twice")
}

// TestWorkerDrains cancels Run while requests are queued and in flight: each
// request is either answered and acknowledged, or still in the stream for the
// next worker, which answers it. None is lost, none is answered twice.
func TestWorkerDrains(t *testing.T) {
	queue := events.DefaultQueueConfig()
	queue.AckWait = time.Second // what a stopped worker fetched but did not settle comes back soon
	p := deploy(t, irisSpec(t), irisFixture(t).model, queue)
	in := subscribe(t, p.client)
	const requests = 1000
	msgs, want := syncRequests(t, p, in, requests, func(i int) int { return 1 + i%3 })
	got := listen(t, in, want)

	cfg := p.config()
	cfg.MaxBatchSize = 8
	first := p.start(t, cfg, p.sessions(t, 2))
	p.publish(t, msgs...)
	require.Eventually(t, func() bool {
		answered, _ := got.count()
		return answered > 0
	}, waitFor, time.Millisecond)
	first.stop(t)

	// Every request the first worker answered it also acknowledged, and every
	// other one is still in the stream.
	var answered int
	var remaining uint64
	require.Eventually(t, func() bool {
		answered, _ = got.count()
		remaining = p.streamMsgs(t)
		return uint64(answered)+remaining == requests
	}, waitFor, 5*time.Millisecond, "answered %d + in the stream %d != published %d", answered, remaining, requests)
	require.NotZero(t, remaining, "the worker was stopped with requests still queued")
	t.Logf("first worker answered %d requests; %d were left in the stream", answered, remaining)

	// The next worker answers the rest.
	p.answerTheRest(t, cfg, got, requests)
}

// gate is a Model that holds every run until it is opened.
type gate struct {
	model   worker.Model
	opened  chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (g *gate) Run(inputs []oip.Tensor) ([]oip.Tensor, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.opened
	return g.model.Run(inputs)
}

// TestWorkerDrainTimeout stops a worker whose model is stuck longer than
// DrainTimeout while more requests wait to be batched. Run must not crash;
// once the model finishes it returns, and no request is lost.
func TestWorkerDrainTimeout(t *testing.T) {
	queue := events.DefaultQueueConfig()
	queue.AckWait = time.Second
	p := deploy(t, irisSpec(t), irisFixture(t).model, queue)
	in := subscribe(t, p.client)
	const requests = 64
	msgs, want := syncRequests(t, p, in, requests, func(int) int { return 1 })
	got := listen(t, in, want)
	p.publish(t, msgs...)

	cfg := p.config()
	cfg.MaxBatchSize = 4
	cfg.MaxDelay = time.Second
	cfg.DrainTimeout = 200 * time.Millisecond
	stuck := &gate{model: p.sessions(t, 1)[0], opened: make(chan struct{}), entered: make(chan struct{})}
	w := p.start(t, cfg, []worker.Model{stuck})
	<-stuck.entered
	// The model holds one batch, the next waits for it, one more is being
	// handed over and the incoming queue is full: 4 batches of 4. Wait
	// until the worker has taken more than that, so one delivery blocks.
	consumer, err := p.js.Consumer(t.Context(), events.StreamName(p.fn.Metadata.Name), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := consumer.Info(t.Context())
		return err == nil && info.NumAckPending > 4*cfg.MaxBatchSize
	}, waitFor, 5*time.Millisecond)

	w.cancel()
	require.Eventually(t, func() bool { return w.logs.contains("drain timed out") }, waitFor, 5*time.Millisecond)
	close(stuck.opened)
	w.stop(t)

	// What it held it answered; the rest is in the stream.
	require.Eventually(t, func() bool {
		answered, _ := got.count()
		return uint64(answered)+p.streamMsgs(t) == requests
	}, waitFor, 5*time.Millisecond)

	p.answerTheRest(t, p.config(), got, requests)
}
