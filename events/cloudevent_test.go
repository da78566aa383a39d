package events_test

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
)

func requestEvent(t *testing.T) *event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID("req-1")
	ev.SetSource("/test")
	ev.SetType(events.TypeInferenceRequest)
	ev.SetExtension(events.ExtensionModel, "iris")
	ev.SetDataContentType("application/json")
	ev.DataEncoded = []byte(`{"inputs":[]}`)
	return &ev
}

func TestWriteEventBinaryMode(t *testing.T) {
	msg := nats.NewMsg("subject")
	ev := requestEvent(t)
	require.NoError(t, events.WriteEvent(context.Background(), msg, ev))
	require.Same(t, &ev.DataEncoded[0], &msg.Data[0], "the body is the event's data, not a copy")
	require.Equal(t, "1.0", msg.Header.Get("ce-specversion"))
	require.Equal(t, "req-1", msg.Header.Get("ce-id"))
	require.Equal(t, events.TypeInferenceRequest, msg.Header.Get("ce-type"))
	require.Equal(t, "iris", msg.Header.Get("ce-model"))
	require.Equal(t, "application/json", msg.Header.Get("content-type"))
	require.Equal(t, `{"inputs":[]}`, string(msg.Data))
}

// The binding must survive a real trip through nats-server, whose header
// handling is what a worker sees.
func TestEventRoundTripThroughNATS(t *testing.T) {
	srv := natstest.Run(t)
	nc := natstest.Connect(t, srv)
	sub, err := nc.SubscribeSync("roundtrip")
	require.NoError(t, err)
	msg := nats.NewMsg("roundtrip")
	require.NoError(t, events.WriteEvent(context.Background(), msg, requestEvent(t)))
	require.NoError(t, nc.PublishMsg(msg))
	got, err := sub.NextMsg(5e9)
	require.NoError(t, err)

	ev, err := events.ReadEvent(context.Background(), got.Header, got.Data)
	require.NoError(t, err)
	require.Equal(t, "req-1", ev.ID())
	require.Equal(t, "/test", ev.Source())
	require.Equal(t, events.TypeInferenceRequest, ev.Type())
	require.Equal(t, "iris", ev.Extensions()[events.ExtensionModel])
	require.Equal(t, "application/json", ev.DataContentType())
	require.JSONEq(t, `{"inputs":[]}`, string(ev.Data()))
}

func TestReadEventStructuredMode(t *testing.T) {
	header := nats.Header{"content-type": []string{"application/cloudevents+json"}}
	body := []byte(`{"specversion":"1.0","id":"s-1","source":"/x","type":"dev.sluice.inference.request","model":"iris","datacontenttype":"application/json","data":{"inputs":[]}}`)
	ev, err := events.ReadEvent(context.Background(), header, body)
	require.NoError(t, err)
	require.Equal(t, "s-1", ev.ID())
	require.Equal(t, "iris", ev.Extensions()[events.ExtensionModel])
	require.JSONEq(t, `{"inputs":[]}`, string(ev.Data()))
}

func TestReadEventErrors(t *testing.T) {
	cases := []struct {
		name   string
		header nats.Header
		want   string
	}{
		{"no cloudevent at all", nats.Header{}, "unknown"},
		{"missing id", nats.Header{"ce-specversion": {"1.0"}, "ce-source": {"/x"}, "ce-type": {"t"}}, "id"},
		{"missing source", nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-type": {"t"}}, "source"},
		{"missing type", nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-source": {"/x"}}, "type"},
		{"unknown spec version", nats.Header{"ce-specversion": {"9.9"}, "ce-id": {"1"}}, "unsupported specversion"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.ReadEvent(context.Background(), tc.header, nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// BenchmarkWriteEvent writes the event of a batch run's answer (4,096 Iris
// rows in binary, about 80 KiB) onto a NATS message, as a worker does for
// each answer it announces.
func BenchmarkWriteEvent(b *testing.B) {
	ev := event.New()
	ev.SetID("batch-1")
	ev.SetSource("/bench")
	ev.SetType(events.TypeInferenceResponse)
	ev.SetExtension(events.ExtensionModel, "iris")
	events.SetInferenceData(&ev, make([]byte, 80<<10), 200)
	b.SetBytes(int64(len(ev.Data())))
	b.ReportAllocs()
	for b.Loop() {
		msg := nats.NewMsg("subject")
		if err := events.WriteEvent(context.Background(), msg, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
