package activator_test

import (
	"encoding/json"
	"net/http"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
)

// The CloudEvents Go SDK's client, unchanged, understands every answer to
// a request CloudEvent: the response, the 202 of an asynchronous request
// (dev.sluice.inference.accepted, with where its result is), and an error
// (dev.sluice.inference.error, the JSON error as data, the HTTP status kept).
func TestTheCloudEventsSDKReadsEveryAnswer(t *testing.T) {
	p := startPlatform(t, newSetup())
	client, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(p.url + "/"))
	require.NoError(t, err)
	request := func(id, model string) cloudevents.Event {
		ev := cloudevents.NewEvent()
		ev.SetID(id)
		ev.SetSource("/sdk")
		ev.SetType(events.TypeInferenceRequest)
		ev.SetExtension(events.ExtensionModel, model)
		require.NoError(t, ev.SetData(cloudevents.ApplicationJSON, json.RawMessage(irisBody)))
		return ev
	}
	ctx := t.Context()

	answer, result := client.Request(ctx, request("sdk-1", "irs"))
	var status *cehttp.Result
	require.True(t, cloudevents.ResultAs(result, &status), "result: %v", result)
	require.Equal(t, http.StatusNotFound, status.StatusCode)
	require.NotNil(t, answer, "the error is an event: %v", result)
	require.Equal(t, events.TypeInferenceError, answer.Type())
	require.Equal(t, "sdk-1", answer.Extensions()[events.ExtensionRequestID])
	var failure struct{ Error string }
	require.NoError(t, answer.DataAs(&failure))
	require.Contains(t, failure.Error, `model "irs" is not deployed`)

	async := cehttp.WithCustomHeader(ctx, http.Header{"Prefer": {"respond-async"}})
	answer, result = client.Request(async, request("sdk-2", "iris"))
	require.True(t, cloudevents.ResultAs(result, &status), "result: %v", result)
	require.Equal(t, http.StatusAccepted, status.StatusCode)
	require.NotNil(t, answer)
	require.Equal(t, events.TypeInferenceAccepted, answer.Type())
	var accepted struct{ ID, Status, Location string }
	require.NoError(t, answer.DataAs(&accepted))
	require.Equal(t, "sdk-2", accepted.ID)
	require.Equal(t, "/v1/requests/sdk-2?source=%2Fsdk", accepted.Location)

	require.NoError(t, takeRequest(t, p.js).Ack()) // the asynchronous one, out of the way
	answers := make(chan *cloudevents.Event, 1)
	go func() {
		answer, _ := client.Request(ctx, request("sdk-3", "iris"))
		answers <- answer
	}()
	reply(t, p.js, takeRequest(t, p.js), 0, irisAnswer)
	answer = <-answers
	require.NotNil(t, answer)
	require.Equal(t, events.TypeInferenceResponse, answer.Type())
}
