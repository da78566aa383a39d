package worker_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
)

// TestAnswerLargerThanANATSMessage: an answer over what one NATS message
// carries goes through the answers store, for a waiting caller and into the
// results bucket; one over MaxAnswerBytes is refused with 413.
func TestAnswerLargerThanANATSMessage(t *testing.T) {
	p := deployIris(t)
	results, err := events.EnsureResultsBucket(t.Context(), p.js, time.Hour)
	require.NoError(t, err)
	answers, err := events.EnsureAnswersStore(t.Context(), p.js, time.Hour)
	require.NoError(t, err)
	cfg := p.config()
	cfg.Results, cfg.Answers = results, answers
	p.start(t, cfg, p.sessions(t, 1))
	rowCount := int(p.client.MaxPayload()) / 30 // an answer row takes about 45 bytes, a request row 16
	req, rows := irisRequest(t, "large", 0, rowCount)

	in := subscribe(t, p.client)
	p.publish(t, requestMsg(t, p.fn, "large", body(t, req), in.subject, time.Now().Add(time.Minute)))
	var msg = <-in.msgs
	name := msg.Header.Get(events.HeaderAnswerObject)
	require.NotEmpty(t, name, "the answer is in the answers store")
	require.Empty(t, msg.Data)
	msg.Data, err = events.ReadAnswer(t.Context(), answers, name, true)
	require.NoError(t, err)
	require.Greater(t, len(msg.Data), int(p.client.MaxPayload()))
	requireIrisAnswer(t, readReply(t, msg), rows)
	_, err = answers.GetInfo(t.Context(), name)
	require.Error(t, err, "the reader removed it")

	recorded := asyncMsg(t, p, "large-async", body(t, req))
	p.publish(t, recorded)
	var result events.Result
	require.Eventually(t, func() bool {
		entry, err := results.Get(context.Background(), events.ResultKey("/sluice/activator", "large-async"))
		if err != nil {
			return false
		}
		result, err = events.DecodeResult(entry.Value())
		return err == nil
	}, waitFor, 10*time.Millisecond)
	require.Equal(t, events.ResultDone, result.Status)
	require.NotEmpty(t, result.Object)
	stored, err := events.ReadAnswer(t.Context(), answers, result.Object, false)
	require.NoError(t, err)
	resp, err := oip.DecodeInferenceResponse(stored, oip.DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, []int64{int64(rowCount), 3}, resp.Outputs[0].Shape)
	p.streamEmpty(t)
}

func TestAnswerOverTheLimitIs413(t *testing.T) {
	p := deployIris(t)
	cfg := p.config()
	cfg.MaxAnswerBytes = 1 << 20
	p.start(t, cfg, p.sessions(t, 1))
	req, _ := irisRequest(t, "too-large", 0, 30_000) // about 1.3 MB of answer
	in := subscribe(t, p.client)
	p.publish(t, requestMsg(t, p.fn, "too-large", body(t, req), in.subject, time.Now().Add(time.Minute)))
	r := in.next(t)
	require.Equal(t, strconv.Itoa(http.StatusRequestEntityTooLarge), r.status)
	require.Contains(t, r.problem, "answer too large")
	require.Contains(t, r.problem, "request fewer rows or outputs")
	p.streamEmpty(t)
}

func TestAnswerSureToBeOverTheLimitIsRefusedBeforeItRuns(t *testing.T) {
	p := deployIris(t)
	cfg := p.config()
	cfg.MaxAnswerBytes = 1 << 20
	w := p.start(t, cfg, p.sessions(t, 1))
	req, _ := irisRequest(t, "sure-too-large", 0, 100_000) // 20 bytes a row at least: probabilities and label
	in := subscribe(t, p.client)
	p.publish(t, requestMsg(t, p.fn, "sure-too-large", body(t, req), in.subject, time.Now().Add(time.Minute)))
	r := in.next(t)
	require.Equal(t, strconv.Itoa(http.StatusRequestEntityTooLarge), r.status)
	require.Contains(t, r.problem, "the answer to 100000 rows takes at least 20 bytes a row, the limit is 1048576 bytes: request at most 52428 rows")
	require.Empty(t, metrics(t, w.registry, "sluice_worker_batch_size")[0].GetHistogram().GetSampleCount(), "the model did not run")
}
