//go:build faults

package e2e

import (
	"fmt"
	"maps"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The rate of the scenarios' load, in requests a second: enough that every
// fault lands on requests in flight, little enough for two cores that also
// run three NATS servers, two workers and the activator.
const faultRate = 40

// TestFaultsOnACluster runs each fault against Sluice on a replicated NATS
// cluster, one after the other, each under load, and counts every request:
// sent, acknowledged (200 for a synchronous call, 202 for an asynchronous
// one), answered, failed, lost (acknowledged and never answered: must be
// 0), and the time to recover.
func TestFaultsOnACluster(t *testing.T) {
	c := newFaultCluster(t)

	t.Run("worker SIGKILLed under sync load", func(t *testing.T) {
		late := lateSince(t, c.url)
		l := startFaultLoad(c.url, faultRate, false)
		time.Sleep(2 * time.Second)
		// Paused first, so that it holds requests when it dies: at this
		// rate a request is in a worker for a few milliseconds only.
		c.workers[0].signal(syscall.SIGSTOP)
		time.Sleep(300 * time.Millisecond)
		killed := time.Now()
		c.workers[0].stop(syscall.SIGKILL)
		time.Sleep(4 * time.Second)
		l.stop()
		slowest := l.tally.slowestAfter(killed)
		c.workers[0].start(t)
		report(t, l.tally.row(reliability{scenario: "worker SIGKILLed under sync load, holding requests", late: late(), recover: slowest,
			note: "recover: the slowest answer of a request in flight at the kill (the worker was paused 0.3 s before, so it held some)"}))
		require.Zero(t, l.tally.failed(), "failures: %v", l.tally.failures)
		require.Less(t, slowest, 3*time.Second, "a request the dead worker held is answered by the other within about 2 s")
	})

	t.Run("worker SIGKILLed in the middle of a batch", func(t *testing.T) {
		late := lateSince(t, c.url)
		l := startFaultLoad(c.url, 4*faultRate, true) // a batch: asynchronous requests, faster than they are scored
		time.Sleep(3 * time.Second)
		c.workers[1].stop(syscall.SIGKILL)
		time.Sleep(2 * time.Second)
		l.stop()
		c.workers[1].start(t)
		start := time.Now()
		lost := l.tally.collect(t, c.url, 60*time.Second)
		report(t, l.tally.row(reliability{scenario: "worker SIGKILLed in the middle of a batch", lost: int64(lost), late: late(), recover: time.Since(start),
			note: "recover: from the end of the batch to its last result"}))
		require.Zero(t, lost, "acknowledged requests lost")
		require.Zero(t, l.tally.failed(), "failures: %v", l.tally.failures)
	})

	t.Run("worker SIGTERMed while scaling down under load", func(t *testing.T) {
		late := lateSince(t, c.url)
		l := startFaultLoad(c.url, faultRate, false)
		time.Sleep(2 * time.Second)
		stopped := time.Now()
		c.workers[0].stop(syscall.SIGTERM) // as the autoscaler scaling down: it drains
		took := time.Since(stopped)
		time.Sleep(2 * time.Second)
		l.stop()
		c.workers[0].start(t)
		report(t, l.tally.row(reliability{scenario: "worker SIGTERMed while scaling down under load", late: late(), recover: took, note: "recover: the worker's drain"}))
		require.Zero(t, l.tally.failed(), "failures: %v", l.tally.failures)
	})

	t.Run("hung worker (SIGSTOP), then resumed", func(t *testing.T) {
		late := lateSince(t, c.url)
		l := startFaultLoad(c.url, faultRate, false)
		time.Sleep(2 * time.Second)
		hung := time.Now()
		c.workers[1].signal(syscall.SIGSTOP)
		time.Sleep(4 * time.Second)
		c.workers[1].signal(syscall.SIGCONT)
		time.Sleep(2 * time.Second)
		l.stop()
		slowest := l.tally.slowestAfter(hung)
		report(t, l.tally.row(reliability{scenario: "hung worker (SIGSTOP 4 s), then resumed", late: late(), recover: slowest,
			note: "recover: the slowest answer from the hang on; late: answers of the resumed worker to requests another had answered"}))
		require.Zero(t, l.tally.failed(), "failures: %v", l.tally.failures)
	})

	t.Run("NATS server SIGKILLed and restarted under sync and async load", func(t *testing.T) {
		natsFault(t, c, "stream leader's NATS server SIGKILLed, restarted 5 s later", "the kill", "the restart",
			func(p *proc) { p.stop(syscall.SIGKILL) }, func(p *proc) { p.start(t) })
	})

	t.Run("NATS server cut off (SIGSTOP) and healed under sync and async load", func(t *testing.T) {
		natsFault(t, c, "stream leader's NATS server cut off 5 s, then healed", "the cut", "healing",
			func(p *proc) { p.signal(syscall.SIGSTOP) }, func(p *proc) { p.signal(syscall.SIGCONT) })
	})

	t.Run("activator SIGKILLed with async requests outstanding", func(t *testing.T) {
		for _, w := range c.workers {
			w.signal(syscall.SIGSTOP) // nothing is scored: every request is outstanding when the activator dies
		}
		l := startFaultLoad(c.url, 4*faultRate, true)
		time.Sleep(2 * time.Second)
		c.activator.stop(syscall.SIGKILL)
		l.stop()
		for _, w := range c.workers {
			w.signal(syscall.SIGCONT)
		}
		killed := time.Now()
		c.activator.start(t)
		c.awaitServing(t)
		back := time.Since(killed)
		late := lateSince(t, c.url) // the new activator's
		lost := l.tally.collect(t, c.url, 60*time.Second)
		report(t, l.tally.row(reliability{scenario: "activator SIGKILLed with async requests outstanding", lost: int64(lost), late: late(), recover: back,
			note: "recover: a new activator serving; failed are requests cut off by the kill, never acknowledged"}))
		require.Zero(t, lost, "acknowledged requests lost")
	})
}

// natsFault runs synchronous and asynchronous load, breaks the NATS server
// that leads the function's stream (fault), heals it 5 s later, and counts:
// no acknowledged request may be lost.
func natsFault(t *testing.T, c *faultCluster, scenario, faultName, healName string, fault, heal func(*proc)) {
	late := lateSince(t, c.url)
	sync, async := startFaultLoad(c.url, faultRate, false), startFaultLoad(c.url, faultRate, true)
	time.Sleep(2 * time.Second)
	leader := c.nats[c.streamLeader(t)]
	broken := time.Now()
	fault(leader)
	time.Sleep(5 * time.Second)
	heal(leader)
	current := c.awaitReplicasCurrent(t)
	time.Sleep(time.Second)
	sync.stop()
	async.stop()
	lost := async.tally.collect(t, c.url, 60*time.Second)
	report(t, reliability{scenario: scenario,
		sent: sync.tally.sent.Load() + async.tally.sent.Load(), acked: sync.tally.acked.Load() + async.tally.acked.Load(),
		answered: sync.tally.answered.Load() + async.tally.answered.Load(), failed: int64(sync.tally.failed() + async.tally.failed()),
		failures: merge(sync.tally.failures, async.tally.failures), lost: int64(lost), late: late(), recover: sync.tally.slowestAfter(broken),
		note: fmt.Sprintf("recover: the slowest sync answer from %s on (requests wait, published again, while a new leader is elected); replicas current %s after %s",
			faultName, current.Round(100*time.Millisecond), healName)})
	require.Zero(t, lost, "acknowledged requests lost")
}

func merge(a, b map[string]int) map[string]int {
	merged := maps.Clone(a)
	for k, v := range b {
		merged[k] += v
	}
	return merged
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
