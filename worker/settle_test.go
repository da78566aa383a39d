package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/worker"
)

// eventMsg publishes ev as the activator would, with the usual headers.
func eventMsg(t *testing.T, fn *functions.Function, ev *event.Event, replyTo string) *nats.Msg {
	t.Helper()
	msg := nats.NewMsg(events.RequestSubject(fn.Metadata.Name, fn.Status.Revision))
	require.NoError(t, events.WriteEvent(context.Background(), msg, ev))
	msg.Header.Set(events.HeaderReplyTo, replyTo)
	msg.Header.Set(events.HeaderDeadline, strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10))
	msg.Header.Set(events.HeaderMsgID, ev.ID())
	return msg
}

func TestWorkerRefusesBadInput(t *testing.T) {
	p := deployIris(t)
	w := p.start(t, p.config(), p.sessions(t, 1))
	in := subscribe(t, p.client)
	good, _ := irisRequest(t, "", 0, 1)
	goodBody := string(body(t, good))

	tests := []struct {
		name string
		msg  func(t *testing.T, id string) *nats.Msg
		// want is part of the error message; requestID says whether the
		// reply names the request (a message that is no CloudEvent has no id).
		want      string
		requestID bool
	}{
		{
			name: "wrong input name",
			msg: func(t *testing.T, id string) *nats.Msg {
				return requestMsg(t, p.fn, id, []byte(`{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`), in.subject, time.Now().Add(time.Minute))
			},
			want: `inputs[0].name: model has no input "features"`, requestID: true,
		},
		{
			name: "wrong datatype",
			msg: func(t *testing.T, id string) *nats.Msg {
				return requestMsg(t, p.fn, id, []byte(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}]}`), in.subject, time.Now().Add(time.Minute))
			},
			want: "inputs[0].datatype: model input \"input\" takes FP32, got FP64", requestID: true,
		},
		{
			name: "wrong shape",
			msg: func(t *testing.T, id string) *nats.Msg {
				return requestMsg(t, p.fn, id, []byte(`{"inputs":[{"name":"input","shape":[1,5],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,1]}]}`), in.subject, time.Now().Add(time.Minute))
			},
			want: "inputs[0].shape", requestID: true,
		},
		{
			name: "unknown requested output",
			msg: func(t *testing.T, id string) *nats.Msg {
				req, _ := irisRequest(t, id, 0, 1)
				req.Outputs = []oip.RequestedOutput{{Name: "nope"}}
				return requestMsg(t, p.fn, id, body(t, req), in.subject, time.Now().Add(time.Minute))
			},
			want: `outputs[0].name: model has no output "nope"`, requestID: true,
		},
		{
			name: "malformed JSON",
			msg: func(t *testing.T, id string) *nats.Msg {
				return requestMsg(t, p.fn, id, []byte(`{"inputs":[{"name":"input",`), in.subject, time.Now().Add(time.Minute))
			},
			want: "body: invalid JSON", requestID: true,
		},
		{
			name: "not an inference request",
			msg: func(t *testing.T, id string) *nats.Msg {
				ev := event.New()
				ev.SetID(id)
				ev.SetSource("/test")
				ev.SetType("dev.sluice.something.else")
				ev.DataEncoded = []byte(goodBody)
				return eventMsg(t, p.fn, &ev, in.subject)
			},
			want: `type: want "dev.sluice.inference.request", got "dev.sluice.something.else"`, requestID: true,
		},
		{
			name: "not a CloudEvent",
			msg: func(t *testing.T, id string) *nats.Msg {
				msg := nats.NewMsg(events.RequestSubject(p.fn.Metadata.Name, p.fn.Status.Revision))
				msg.Header.Set(events.HeaderReplyTo, in.subject)
				msg.Header.Set(events.HeaderMsgID, id)
				msg.Data = []byte(goodBody)
				return msg
			},
			want: "cloudevent",
		},
	}
	for i, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			id := fmt.Sprintf("bad-%d", i)
			p.publish(t, test.msg(t, id))
			r := in.next(t)
			require.Equal(t, strconv.Itoa(http.StatusBadRequest), r.status, r.problem)
			require.Equal(t, events.TypeInferenceError, r.eventType)
			require.Contains(t, r.problem, test.want)
			if test.requestID {
				require.Equal(t, id, r.requestID)
			}
			// Terminated: gone from the stream, and never delivered again.
			p.streamEmpty(t)
			in.requireNoReply(t, p.client)
		})
	}

	consumer, err := p.js.Consumer(t.Context(), events.StreamName(p.fn.Metadata.Name), events.ConsumerName(p.fn.Status.Revision))
	require.NoError(t, err)
	info, err := consumer.Info(t.Context())
	require.NoError(t, err)
	require.Zero(t, info.NumRedelivered, "a bad request is not tried again")
	require.Equal(t, float64(len(tests)), counter(t, w.registry, "sluice_worker_requests_total", "outcome", "error"))

	// The worker still serves.
	req, rows := irisRequest(t, "after", 3, 2)
	p.publish(t, requestMsg(t, p.fn, "after", body(t, req), in.subject, time.Now().Add(time.Minute)))
	requireIrisAnswer(t, in.next(t), rows)
}

func TestWorkerDropsExpiredRequests(t *testing.T) {
	p := deployIris(t)
	expired := subscribe(t, p.client)
	waiting := subscribe(t, p.client)
	// The expired request holds a row no other request has.
	marker := float32(99)
	input, err := oip.NewTensor("input", []int64{1, 4}, []float32{marker, marker, marker, marker})
	require.NoError(t, err)
	expiredBody := body(t, &oip.InferenceRequest{Inputs: []oip.Tensor{input}})
	req, rows := irisRequest(t, "in-time", 10, 2)

	tests := []struct {
		name       string
		startFirst bool
	}{
		{name: "expired while queued"},
		{name: "expired on arrival", startFirst: true},
	}
	model := &recorder{model: p.sessions(t, 1)[0]}
	for i, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var w *running
			if test.startFirst {
				w = p.start(t, p.config(), []worker.Model{model})
			}
			p.publish(t,
				requestMsg(t, p.fn, fmt.Sprintf("expired-%d", i), expiredBody, expired.subject, time.Now().Add(-time.Second)),
				requestMsg(t, p.fn, fmt.Sprintf("in-time-%d", i), body(t, req), waiting.subject, time.Now().Add(time.Minute)))
			if !test.startFirst {
				w = p.start(t, p.config(), []worker.Model{model})
			}
			// The worker takes requests in order, so once the later one is
			// answered the expired one has been dealt with.
			requireIrisAnswer(t, waiting.next(t), rows)
			p.streamEmpty(t)
			expired.requireNoReply(t, p.client)
			require.Equal(t, float64(1), counter(t, w.registry, "sluice_worker_requests_total", "outcome", "expired"))
			w.stop(t)
		})
	}
	require.NotEmpty(t, model.shapes())
	// The expired requests, of one row, never ran; the in-time ones have two.
	require.False(t, slices.ContainsFunc(model.shapes(), func(shape []int64) bool { return shape[0] != 2 }), "only the in-time requests ran: %v", model.shapes())
}
