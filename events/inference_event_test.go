package events_test

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
)

// A request in the binary tensor data extension travels through a NATS
// message with its header length as an attribute, and comes back the same.
func TestBinaryRequestDataTravelsInAnEvent(t *testing.T) {
	req := &oip.InferenceRequest{ID: "r", Inputs: []oip.Tensor{{Name: "x", Shape: []int64{1, 2}, Datatype: oip.FP32, Data: []float32{1, 2}}}}
	body, headerLength, err := oip.AppendInferenceRequestBinary(nil, req, func(string) bool { return true })
	require.NoError(t, err)
	plain, err := oip.AppendInferenceRequest(nil, req)
	require.NoError(t, err)
	for _, tt := range []struct {
		name         string
		body         []byte
		headerLength int
		contentType  string
	}{
		{"binary", body, headerLength, events.ContentTypeBinary},
		{"json", plain, 0, events.ContentTypeJSON},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := event.New()
			ev.SetID("1")
			ev.SetSource("/test")
			ev.SetType(events.TypeInferenceRequest)
			events.SetInferenceData(&ev, tt.body, tt.headerLength)
			msg := nats.NewMsg("subject")
			require.NoError(t, events.WriteEvent(context.Background(), msg, &ev))
			back, err := events.ReadEvent(context.Background(), msg.Header, msg.Data)
			require.NoError(t, err)
			require.Equal(t, tt.contentType, back.DataContentType())
			fromHeader, err := events.InferenceHeaderLengthOf(msg.Header)
			require.NoError(t, err)
			require.EqualValues(t, tt.headerLength, fromHeader, "read from the headers alone")
			got, binary, err := events.DecodeRequestData(back, oip.DefaultLimits())
			require.NoError(t, err)
			require.Equal(t, tt.headerLength > 0, binary)
			require.Equal(t, req, got)
		})
	}
}

func TestInferenceHeaderLengthMustBePositive(t *testing.T) {
	for _, value := range []any{"0", "-3", "ten"} {
		ev := event.New()
		ev.SetExtension(events.ExtensionHeaderLength, value)
		_, err := events.InferenceHeaderLength(&ev)
		require.ErrorContains(t, err, "oipheaderlength: want the length in bytes of the JSON inference header", "%v", value)
		_, err = events.InferenceHeaderLengthOf(nats.Header{"ce-oipheaderlength": {value.(string)}})
		require.ErrorContains(t, err, "oipheaderlength: want the length in bytes of the JSON inference header", "%v", value)
	}
}
