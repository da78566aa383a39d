package activator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
)

// binaryHeader is a binary-mode inference request CloudEvent for iris; each
// change is applied to it, and an empty value removes the header.
func binaryHeader(changes map[string]string) http.Header {
	header := http.Header{
		"Ce-Specversion": {"1.0"},
		"Ce-Id":          {"ev-1"},
		"Ce-Source":      {"/test/client"},
		"Ce-Type":        {events.TypeInferenceRequest},
		"Ce-Model":       {"iris"},
		"Content-Type":   {"application/json"},
	}
	for name, value := range changes {
		header.Del(name)
		if value != "" {
			header.Set(name, value)
		}
	}
	return header
}

// structuredEvent is a structured-mode inference request CloudEvent for iris
// with data; each change is applied to its attributes, and nil removes one.
func structuredEvent(t *testing.T, data string, changes map[string]any) string {
	t.Helper()
	attributes := map[string]any{
		"specversion":     "1.0",
		"id":              "ev-2",
		"source":          "/test/client",
		"type":            events.TypeInferenceRequest,
		"model":           "iris",
		"datacontenttype": "application/json",
		"data":            json.RawMessage(data),
	}
	for name, value := range changes {
		delete(attributes, name)
		if value != nil {
			attributes[name] = value
		}
	}
	body, err := json.Marshal(attributes)
	require.NoError(t, err)
	return string(body)
}

func structuredHeader() http.Header {
	return http.Header{"Content-Type": {"application/cloudevents+json"}}
}

func TestCloudEventRejectsBadEvents(t *testing.T) {
	p := startPlatform(t, newSetup())
	tests := []struct {
		name       string
		header     http.Header
		body       string
		wantStatus int
		// wantInMessage are parts of the error message: the attribute and the reason.
		wantInMessage []string
	}{
		{
			name:          "binary without ce-id",
			header:        binaryHeader(map[string]string{"Ce-Id": ""}),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"id:"},
		},
		{
			name:          "binary without ce-id and ce-source",
			header:        binaryHeader(map[string]string{"Ce-Id": "", "Ce-Source": ""}),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"id:", "source:"},
		},
		{
			name:          "structured without source",
			header:        structuredHeader(),
			body:          structuredEvent(t, irisBody, map[string]any{"source": nil}),
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"source:"},
		},
		{
			name:          "not a CloudEvent",
			header:        jsonHeader(),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"bad cloudevent"},
		},
		{
			name:          "binary with a wrong type",
			header:        binaryHeader(map[string]string{"Ce-Type": "com.example.order"}),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"type", events.TypeInferenceRequest, `"com.example.order"`},
		},
		{
			name:          "structured with a wrong type",
			header:        structuredHeader(),
			body:          structuredEvent(t, irisBody, map[string]any{"type": "com.example.order"}),
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"type", events.TypeInferenceRequest, `"com.example.order"`},
		},
		{
			name:          "binary without the model extension",
			header:        binaryHeader(map[string]string{"Ce-Model": ""}),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{`extension "model" is required`, "ce-model"},
		},
		{
			name:          "structured without the model extension",
			header:        structuredHeader(),
			body:          structuredEvent(t, irisBody, map[string]any{"model": nil}),
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{`extension "model" is required`},
		},
		{
			name:          "unknown model",
			header:        binaryHeader(map[string]string{"Ce-Model": "roses"}),
			body:          irisBody,
			wantStatus:    http.StatusNotFound,
			wantInMessage: []string{`model "roses" is not deployed`},
		},
		{
			name:          "unknown model version",
			header:        binaryHeader(map[string]string{"Ce-Modelversion": "9"}),
			body:          irisBody,
			wantStatus:    http.StatusNotFound,
			wantInMessage: []string{`no version "9"`},
		},
		// Header values are decoded as the HTTP binding says: a percent-encoded
		// or quoted name finds iris (whose version 9 does not exist)...
		{
			name:          "binary with a percent-encoded model name",
			header:        binaryHeader(map[string]string{"Ce-Model": "%69ris", "Ce-Modelversion": "9"}),
			body:          irisBody,
			wantStatus:    http.StatusNotFound,
			wantInMessage: []string{`model "iris"`, `no version "9"`},
		},
		{
			name:          "binary with a quoted model name",
			header:        binaryHeader(map[string]string{"Ce-Model": `"ir\is"`, "Ce-Modelversion": "9"}),
			body:          irisBody,
			wantStatus:    http.StatusNotFound,
			wantInMessage: []string{`model "iris"`, `no version "9"`},
		},
		// ...and a value that breaks the rules is refused, naming its header.
		{
			name:          "binary with a broken percent-encoding",
			header:        binaryHeader(map[string]string{"Ce-Model": "ir%zzis"}),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"header ce-model", `"%zz"`},
		},
		{
			name:          "binary with a value that is not UTF-8",
			header:        binaryHeader(map[string]string{"Ce-Source": "/test/%C3%28"}),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"header ce-source", "not UTF-8"},
		},
		{
			name:          "binary with an unterminated quoted value",
			header:        binaryHeader(map[string]string{"Ce-Id": `"ev-1`}),
			body:          irisBody,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"header ce-id", "must end with a double quote"},
		},
		{
			name:          "data the model does not take",
			header:        binaryHeader(nil),
			body:          `{"inputs":[{"name":"input","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"data: inputs[0].shape", "[-1,4]"},
		},
		{
			name:          "structured data that is not an inference request",
			header:        structuredHeader(),
			body:          structuredEvent(t, `{"inputs":[]}`, nil),
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{`data: inputs: model input "input" is missing`},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			answer := p.send(t, p.newRequest(t, http.MethodPost, "/", test.header, test.body))
			errorMessage(t, answer, test.wantStatus, test.wantInMessage...)
		})
	}
}

func TestCloudEventIsAnsweredInItsMode(t *testing.T) {
	p := startPlatform(t, newSetup())
	tests := []struct {
		name   string
		id     string
		header http.Header
		body   string
		// readAnswer reads the response CloudEvent in the mode the request used.
		readAnswer func(t *testing.T, answer response) *event.Event
	}{
		{
			name:       "binary",
			id:         "ev-1",
			header:     binaryHeader(nil),
			body:       irisBody,
			readAnswer: binaryAnswer,
		},
		{
			name:       "structured",
			id:         "ev-2",
			header:     structuredHeader(),
			body:       structuredEvent(t, irisBody, nil),
			readAnswer: structuredAnswer,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/", test.header, test.body))
			request := answerOnce(t, p.js, 0, irisAnswer)
			answer := receive(t, answers)
			require.Equal(t, http.StatusOK, answer.status, "body: %s", answer.body)

			response := test.readAnswer(t, answer)
			require.Equal(t, events.TypeInferenceResponse, response.Type())
			require.Equal(t, test.id, response.Extensions()[events.ExtensionRequestID])
			require.JSONEq(t, irisAnswer, string(response.Data()))

			headers := request.Headers()
			require.Equal(t, test.id, headers.Get("ce-id"))
			require.Equal(t, events.MsgID("/test/client", test.id), headers.Get(events.HeaderMsgID))
			require.Equal(t, "/test/client", headers.Get("ce-source"))
			require.Equal(t, "1", headers.Get("ce-"+events.ExtensionModelVersion), "the activator pins the revision it picked")
			require.JSONEq(t, irisBody, string(request.Data()))
		})
	}
}

// binaryAnswer reads a binary-mode CloudEvent answer: ce-* headers and the data as body.
func binaryAnswer(t *testing.T, answer response) *event.Event {
	t.Helper()
	require.Equal(t, "application/json", answer.header.Get("Content-Type"))
	require.Equal(t, "1.0", answer.header.Get("Ce-Specversion"))
	ev := event.New()
	ev.SetID(answer.header.Get("Ce-Id"))
	ev.SetType(answer.header.Get("Ce-Type"))
	ev.SetSource(answer.header.Get("Ce-Source"))
	ev.SetExtension(events.ExtensionRequestID, answer.header.Get("Ce-Requestid"))
	ev.DataEncoded = answer.body
	require.NoError(t, ev.Validate())
	return &ev
}

// structuredAnswer reads a structured-mode CloudEvent answer: the whole event as JSON.
func structuredAnswer(t *testing.T, answer response) *event.Event {
	t.Helper()
	require.Equal(t, "application/cloudevents+json", answer.header.Get("Content-Type"))
	require.Empty(t, answer.header.Get("Ce-Type"), "a structured answer carries no ce-* headers")
	ev := event.New()
	require.NoError(t, json.Unmarshal(answer.body, &ev), fmt.Sprintf("body: %s", answer.body))
	require.NoError(t, ev.Validate())
	return &ev
}
