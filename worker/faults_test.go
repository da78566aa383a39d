package worker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/worker"
)

// slow is a Model that takes its time over every run.
type slow struct {
	model worker.Model
	delay time.Duration
}

func (s slow) Run(inputs []oip.Tensor) ([]oip.Tensor, error) {
	time.Sleep(s.delay)
	return s.model.Run(inputs)
}

// A model run longer than the ack wait keeps its requests: the worker tells
// JetStream it is still at work, so no request goes to a second worker and
// none is answered twice, however long the model takes.
func TestLongRunsKeepTheirRequests(t *testing.T) {
	p := deployIris(t) // the default ack wait: short
	in := subscribe(t, p.client)
	const requests = 8
	msgs, want := syncRequests(t, p, in, requests, func(int) int { return 1 })
	got := listen(t, in, want)
	cfg := p.config()
	cfg.MaxBatchSize = 2 // four runs in a row: the last requests wait for 4 runs
	ackWait := events.DefaultQueueConfig().AckWait
	p.start(t, cfg, []worker.Model{slow{p.sessions(t, 1)[0], 3 * ackWait / 2}})
	p.start(t, cfg, []worker.Model{slow{p.sessions(t, 1)[0], 3 * ackWait / 2}}) // a second worker that would take any redelivery
	p.publish(t, msgs...)
	require.Eventually(t, func() bool {
		answered, _ := got.count()
		return answered == requests
	}, waitFor, 10*time.Millisecond)
	p.streamEmpty(t)
	info, err := p.stream.Consumer(t.Context(), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	require.Zero(t, info.CachedInfo().NumRedelivered, "a request was delivered again while its worker ran it")
	distinct, total := got.count()
	require.Equal(t, distinct, total, "requests answered twice")
}

// stuck is a Model whose runs never end until the test does.
type stuck struct {
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (s *stuck) Run([]oip.Tensor) ([]oip.Tensor, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return nil, nil
}

// A worker that dies holding requests (its process killed: no settle, no
// more heartbeats) loses none of them: they go to a live worker within the
// ack wait, about a second, not at the caller's timeout.
func TestRequestsOfADeadWorkerGoToALiveOneWithinTwoSeconds(t *testing.T) {
	p := deployIris(t)
	in := subscribe(t, p.client)
	const requests = 16
	msgs, want := syncRequests(t, p, in, requests, func(int) int { return 1 })
	got := listen(t, in, want)
	model := &stuck{entered: make(chan struct{}), release: make(chan struct{})}
	dying := p.start(t, p.config(), []worker.Model{model})
	t.Cleanup(func() { close(model.release) }) // before dying's stop, which waits for its run
	p.publish(t, msgs...)
	<-model.entered

	live := p.start(t, p.config(), p.sessions(t, 1))
	<-live.worker.Ready()
	dying.conn.Close() // as a SIGKILL: nothing it holds is settled or kept alive
	killed := time.Now()
	require.Eventually(t, func() bool {
		answered, _ := got.count()
		return answered == requests
	}, waitFor, 10*time.Millisecond)
	took := time.Since(killed)
	t.Logf("the requests of the dead worker were all answered %s after it died", took.Round(time.Millisecond))
	require.Less(t, took, 2*time.Second, "answered by the live worker within 2 s")
	distinct, total := got.count()
	require.Equal(t, distinct, total, "requests answered twice")
}

// A worker whose stream is deleted and made again (an operator's mistake, a
// restore) says it takes no requests while its consumer is gone, and takes
// them again, without a restart, once the consumer is back.
func TestWorkerTakesRequestsAgainWhenItsStreamIsMadeAgain(t *testing.T) {
	p := deployIris(t)
	in := subscribe(t, p.client)
	msgs, want := syncRequests(t, p, in, 2, func(int) int { return 1 })
	got := listen(t, in, want)
	w := p.start(t, p.config(), p.sessions(t, 1))
	<-w.worker.Ready()
	require.NoError(t, w.worker.Health())
	p.publish(t, msgs[0])
	require.Eventually(t, func() bool { answered, _ := got.count(); return answered == 1 }, waitFor, 10*time.Millisecond)

	ctx := t.Context()
	require.NoError(t, p.js.DeleteStream(ctx, events.StreamName(p.fn.Metadata.Name)))
	require.Eventually(t, func() bool { return w.worker.Health() != nil }, waitFor, 50*time.Millisecond,
		"the worker says its consumer is gone")
	require.ErrorContains(t, w.worker.Health(), "stopped delivering")

	queue := events.DefaultQueueConfig()
	_, err := events.EnsureStream(ctx, p.js, p.fn.Metadata.Name, queue)
	require.NoError(t, err)
	_, err = events.EnsureConsumer(ctx, p.js, p.fn.Metadata.Name, p.fn.Status.Revision, queue)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return w.worker.Health() == nil }, waitFor, 50*time.Millisecond,
		"the worker takes requests again")
	p.publish(t, msgs[1])
	require.Eventually(t, func() bool { answered, _ := got.count(); return answered == 2 }, waitFor, 10*time.Millisecond)
}
