package activator_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// eventuallyStatus polls path until it answers want, within a second: what a
// catalog change does must reach callers that fast.
func (p *platform) eventuallyStatus(t *testing.T, method, path string, want int) response {
	t.Helper()
	var answer response
	require.Eventually(t, func() bool {
		answer = p.send(t, p.newRequest(t, method, path, jsonHeader(), irisBody))
		return answer.status == want
	}, time.Second, 10*time.Millisecond, "%s %s never answered %d; last: %d %s", method, path, want, answer.status, answer.body)
	return answer
}

func TestFailedRevisionAnswers503AtOnce(t *testing.T) {
	p := startPlatform(t, newSetup())
	catalog, err := functions.OpenCatalog(t.Context(), p.js)
	require.NoError(t, err)
	require.NoError(t, catalog.SetRevisionState(t.Context(), "iris", "1", functions.RevisionFailed, "Could not find an implementation for Add(6)"))

	// Readiness first: an inference sent before the change arrives would wait
	// for a worker that never comes.
	started := time.Now()
	p.eventuallyStatus(t, http.MethodGet, "/v2/models/iris/ready", http.StatusServiceUnavailable)
	answer := p.infer(t, "/v2/models/iris/infer", irisBody)
	require.Less(t, time.Since(started), time.Second)
	errorMessage(t, answer, http.StatusServiceUnavailable, `model "iris"`, "model cannot run", "revision 1", "Could not find an implementation for Add(6)")
	require.Equal(t, "1", answer.header.Get("Retry-After"))
	require.Zero(t, p.queued(t), "a request for a model that cannot run is not queued")

	errorMessage(t, p.get(t, "/v2/models/iris/ready"), http.StatusServiceUnavailable, "Could not find an implementation for Add(6)")
	metadata := p.get(t, "/v2/models/iris")
	require.Equal(t, http.StatusOK, metadata.status, "the metadata of a model that cannot run says why")
	require.Contains(t, string(metadata.body), `"state":"Failed"`)
	require.Contains(t, string(metadata.body), `"reason":"Could not find an implementation for Add(6)"`)
	require.Contains(t, string(metadata.body), `"inputs":[{"name":"input"`)

	ce := p.newRequest(t, http.MethodPost, "/", binaryHeader(nil), irisBody)
	errorMessage(t, p.send(t, ce), http.StatusServiceUnavailable, "model cannot run")
}

func TestFailedRevisionFallsBackToTheOneBefore(t *testing.T) {
	p := startPlatform(t, newSetup())
	catalog, err := functions.OpenCatalog(t.Context(), p.js)
	require.NoError(t, err)
	fn, err := catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	fn.Status.Revisions = append(fn.Status.Revisions, fn.Status.Revisions[0])
	fn.Status.Revisions[1].Name, fn.Status.Revisions[1].State, fn.Status.Revisions[1].Reason = "2", functions.RevisionFailed, "no kernel"
	fn.Status.Revision = "2"
	require.NoError(t, catalog.Put(t.Context(), fn))
	_, err = events.EnsureConsumer(t.Context(), p.js, "iris", "2", events.DefaultQueueConfig())
	require.NoError(t, err)

	p.eventuallyStatus(t, http.MethodGet, "/v2/models/iris/versions/2/ready", http.StatusServiceUnavailable)
	answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
	request := answerOnce(t, p.js, 0, irisAnswer) // from revision 1's queue
	require.Equal(t, events.RequestSubject("iris", "1"), request.Subject())
	require.Equal(t, http.StatusOK, receive(t, answers).status)
	require.Equal(t, http.StatusOK, p.get(t, "/v2/models/iris/ready").status, "revision 1 serves")
	errorMessage(t, p.infer(t, "/v2/models/iris/versions/2/infer", irisBody), http.StatusServiceUnavailable, "revision 2: no kernel")
}

func TestDeployedFunctionAnswersBeforeTheWatchBringsIt(t *testing.T) {
	p := startPlatform(t, newSetup())
	catalog, err := functions.OpenCatalog(t.Context(), p.js)
	require.NoError(t, err)
	fn, err := catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	// Deploy copies and ask for each at once: never a 404.
	deployer := functions.NewDeployer(p.js, catalog, events.DefaultQueueConfig())
	fn.Spec.Model = functions.ModelSpec{URI: fn.Status.Model.Object}
	for i := range 20 {
		fn.Metadata.Name = fmt.Sprintf("copy%d", i)
		_, err := deployer.Deploy(t.Context(), fn, nil)
		require.NoError(t, err)
		metadata := p.get(t, "/v2/models/"+fn.Metadata.Name)
		require.Equal(t, http.StatusOK, metadata.status, string(metadata.body))
	}
}

// addCandidate makes iris revision 2, a copy of revision 1, lets change set
// the traffic or rollout that reaches it, and returns once the activator
// knows it.
func (p *platform) addCandidate(t *testing.T, change func(*functions.Status)) {
	t.Helper()
	catalog, err := functions.OpenCatalog(t.Context(), p.js)
	require.NoError(t, err)
	_, err = catalog.Modify(t.Context(), "iris", func(fn *functions.Function) (bool, error) {
		candidate := fn.Status.Revisions[0]
		candidate.Name = "2"
		fn.Status.Revisions = append(fn.Status.Revisions, candidate)
		fn.Status.Revision = "2"
		change(&fn.Status)
		return true, nil
	})
	require.NoError(t, err)
	_, err = events.EnsureConsumer(t.Context(), p.js, "iris", "2", events.DefaultQueueConfig())
	require.NoError(t, err)
	p.eventuallyStatus(t, http.MethodGet, "/v2/models/iris/versions/2/ready", http.StatusOK)
}

// TestTrafficSplitsAndStays: with a traffic table, requests go to its
// revisions in proportion, and a route key keeps a caller on one.
func TestTrafficSplitsAndStays(t *testing.T) {
	p := startPlatform(t, newSetup())
	p.addCandidate(t, func(status *functions.Status) {
		status.Traffic = functions.Traffic{{Revision: "1", Weight: 50}, {Revision: "2", Weight: 50}}
	})

	send := func(n int, header http.Header) {
		for i := range n {
			header := header.Clone()
			header.Set("Prefer", "respond-async")
			header.Set("Idempotency-Key", fmt.Sprintf("%s-%d", header.Get(functions.RouteKeyHeader), i))
			require.Equal(t, http.StatusAccepted, p.send(t, p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", header, irisBody)).status)
		}
	}
	perRevision := func() map[string]uint64 {
		stream, err := p.js.Stream(t.Context(), events.StreamName("iris"))
		require.NoError(t, err)
		info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(events.RequestSubjects("iris")))
		require.NoError(t, err)
		return info.State.Subjects
	}
	send(60, jsonHeader())
	split := perRevision()
	require.Greater(t, split[events.RequestSubject("iris", "1")], uint64(15), "%v", split)
	require.Greater(t, split[events.RequestSubject("iris", "2")], uint64(15), "%v", split)

	sticky := jsonHeader()
	sticky.Set(functions.RouteKeyHeader, "customer-7")
	send(20, sticky)
	after := perRevision()
	moved := 0
	for subject, count := range after {
		if count != split[subject] {
			moved++
			require.Equal(t, split[subject]+20, count, "every request of the key went to %s", subject)
		}
	}
	require.Equal(t, 1, moved, "one revision took the key's requests: %v then %v", split, after)
}

// TestACanaryFailureIsAnsweredByTheStableRevision: a request the rollout's
// candidate fails for a reason of the server's goes once more to the stable
// revision, and the caller sees only the stable answer; a request pinned to
// the candidate gets the candidate's answer, failure and all.
func TestACanaryFailureIsAnsweredByTheStableRevision(t *testing.T) {
	p := startPlatform(t, newSetup())
	p.addCandidate(t, func(status *functions.Status) {
		status.Rollout = &functions.RolloutStatus{Stable: "1", Candidate: "2", Phase: functions.RolloutProgressing, Weight: 100}
		status.Traffic = status.Rollout.Traffic()
	})

	answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
	failed := takeRequestOf(t, p.js, "2")
	reply(t, p.js, failed, http.StatusInternalServerError, `{"error":"model failed: Add(6)"}`)
	require.NoError(t, failed.Ack())
	retried := takeRequestOf(t, p.js, "1")
	reply(t, p.js, retried, 0, irisAnswer)
	require.NoError(t, retried.Ack())
	answer := receive(t, answers)
	require.Equal(t, http.StatusOK, answer.status, string(answer.body))
	require.NotEmpty(t, answer.header.Get("Sluice-Request-Id"))
	require.Equal(t, failed.Headers().Get(events.HeaderMsgID)+"#retry", retried.Headers().Get(events.HeaderMsgID))
	require.Equal(t, 1.0, counter(t, p.metrics, "sluice_activator_canary_retries_total", map[string]string{"function": "iris"}))

	pinned := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/versions/2/infer", jsonHeader(), irisBody))
	answerOnceOf(t, p.js, "2", http.StatusInternalServerError, `{"error":"model failed: Add(6)"}`)
	require.Equal(t, http.StatusInternalServerError, receive(t, pinned).status)
}

// TestShadowGetsACopyAndItsAnswerIsCompared: in shadow, the caller gets the
// stable answer without waiting for the candidate, which gets a copy under
// an id of its own; the two answers are compared and counted.
func TestShadowGetsACopyAndItsAnswerIsCompared(t *testing.T) {
	p := startPlatform(t, newSetup())
	p.addCandidate(t, func(status *functions.Status) {
		status.Rollout = &functions.RolloutStatus{Stable: "1", Candidate: "2", Phase: functions.RolloutProgressing, Shadowing: true}
		status.Traffic = status.Rollout.Traffic()
	})
	counts, err := events.EnsureCountsBucket(t.Context(), p.js)
	require.NoError(t, err)

	for i, candidateAnswer := range []string{irisAnswer, strings.Replace(irisAnswer, `"data":[0]`, `"data":[2]`, 1)} {
		answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
		stable := answerOnce(t, p.js, 0, irisAnswer)
		answer := receive(t, answers)
		require.Equal(t, http.StatusOK, answer.status, "the caller has the stable answer before the candidate gives its own")
		copied := takeRequestOf(t, p.js, "2")
		require.Equal(t, stable.Headers().Get(events.HeaderMsgID)+"#shadow", copied.Headers().Get(events.HeaderMsgID))
		reply(t, p.js, copied, 0, candidateAnswer)
		require.NoError(t, copied.Ack())
		require.Eventually(t, func() bool {
			got, err := functions.ReadCounts(t.Context(), counts, "iris", "2")
			return err == nil && got.Compared == int64(i+1) && got.Disagreed == int64(i)
		}, 5*time.Second, 20*time.Millisecond, "answer %d compared", i)
	}
}
