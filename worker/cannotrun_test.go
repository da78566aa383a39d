package worker_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/worker"
)

// TestModelThatCannotRunAnswersWithTheReason: the worker of a revision whose
// model does not load answers its queued requests with ONNX Runtime's error,
// 503 to those who wait and a dead letter for those who do not, instead of
// crash-looping while they wait for a timeout.
func TestModelThatCannotRunAnswersWithTheReason(t *testing.T) {
	p := deployWithDeadLetters(t, events.DefaultQueueConfig())
	reason := fmt.Errorf("%w: revision 1: Could not find an implementation for Add(6)", functions.ErrModelCannotRun)
	cfg := p.config()
	cfg.JetStream = p.js
	p.start(t, cfg, []worker.Model{worker.CannotRun(reason)})

	in := subscribe(t, p.client)
	var msgs []*nats.Msg
	for i := range 3 {
		req, _ := irisRequest(t, fmt.Sprint("sync-", i), i, 1)
		msgs = append(msgs, requestMsg(t, p.fn, fmt.Sprint("sync-", i), body(t, req), in.subject, time.Now().Add(time.Minute)))
	}
	p.publish(t, msgs...)
	for _, r := range in.collect(t, 3) {
		require.Equal(t, strconv.Itoa(http.StatusServiceUnavailable), r.status)
		require.Contains(t, r.problem, "model cannot run: revision 1: Could not find an implementation for Add(6)")
	}

	badBody := []byte(`{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`)
	p.publish(t, requestMsg(t, p.fn, "bad", badBody, in.subject, time.Now().Add(time.Minute)))
	require.Equal(t, strconv.Itoa(http.StatusBadRequest), in.next(t).status, "bad input is still the caller's error")

	req, _ := irisRequest(t, "async", 0, 1)
	msg := asyncMsg(t, p, "async", body(t, req))
	msg.Header.Del(events.HeaderRecord)
	p.publish(t, msg)
	letter := p.deadLetters(t, 1)[0]
	require.Contains(t, letter.Reason, "Could not find an implementation for Add(6)")
	p.streamEmpty(t)
}
