package activator_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/activator"
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
	requireAnswer(t, answer, result, http.StatusNotFound, events.TypeInferenceError)
	require.Equal(t, "sdk-1", answer.Extensions()[events.ExtensionRequestID])
	var failure struct{ Error string }
	require.NoError(t, answer.DataAs(&failure))
	require.Contains(t, failure.Error, `model "irs" is not deployed`)

	async := cehttp.WithCustomHeader(ctx, http.Header{"Prefer": {"respond-async"}})
	answer, result = client.Request(async, request("sdk-2", "iris"))
	requireAnswer(t, answer, result, http.StatusAccepted, events.TypeInferenceAccepted)
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

// Answers given before the handler reads the event (401 here; 408 and 429
// take the same path) and the 202 to feedback are CloudEvents too.
func TestTheCloudEventsSDKReadsAnswersGivenBeforeTheHandler(t *testing.T) {
	path, secrets := keyFile(t, map[string][]string{"labeller": {"feedback:iris"}})
	keys, err := activator.LoadKeys(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	s := newSetup()
	s.config.Keys = keys
	p := startPlatform(t, s)
	client, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(p.url + "/"))
	require.NoError(t, err)
	feedback := cloudevents.NewEvent()
	feedback.SetID("labels-1")
	feedback.SetSource("/sdk")
	feedback.SetType(events.TypeFeedback)
	feedback.SetExtension(events.ExtensionModel, "iris")
	require.NoError(t, feedback.SetData(cloudevents.ApplicationJSON, map[string]any{"features": [][]float32{{5.1, 3.5, 1.4, 0.2}}, "labels": []string{"setosa"}}))

	answer, result := client.Request(t.Context(), feedback)
	requireAnswer(t, answer, result, http.StatusUnauthorized, events.TypeInferenceError)
	require.Equal(t, "labels-1", answer.Extensions()[events.ExtensionRequestID])

	authorized := cehttp.WithCustomHeader(t.Context(), http.Header{"Authorization": {"Bearer " + secrets["labeller"]}})
	answer, result = client.Request(authorized, feedback)
	requireAnswer(t, answer, result, http.StatusAccepted, events.TypeFeedbackAccepted)
	var accepted struct {
		ID   string
		Rows int
	}
	require.NoError(t, answer.DataAs(&accepted))
	require.Equal(t, "labels-1", accepted.ID)
	require.Equal(t, 1, accepted.Rows)
}

// requireAnswer checks what the SDK client got: a result with the HTTP
// status code, and an answer event of type typ.
func requireAnswer(t *testing.T, answer *cloudevents.Event, result error, code int, typ string) {
	t.Helper()
	var status *cehttp.Result
	require.True(t, cloudevents.ResultAs(result, &status), "result: %v", result)
	require.Equal(t, code, status.StatusCode)
	require.NotNil(t, answer, "the answer is an event: %v", result)
	require.Equal(t, typ, answer.Type())
}
