package activator_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
)

func TestInferRejectsBadRequests(t *testing.T) {
	p := startPlatform(t, newSetup())
	tests := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		// wantInMessage are parts of the error message: the field and the reason.
		wantInMessage []string
	}{
		{
			name:          "malformed JSON",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs": [{"name": "input",`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"body", "invalid JSON"},
		},
		{
			name:          "unknown model",
			path:          "/v2/models/roses/infer",
			body:          irisBody,
			wantStatus:    http.StatusNotFound,
			wantInMessage: []string{`model "roses" is not deployed`},
		},
		{
			name:          "unknown version",
			path:          "/v2/models/iris/versions/9/infer",
			body:          irisBody,
			wantStatus:    http.StatusNotFound,
			wantInMessage: []string{`no version "9"`, `live: [1]`},
		},
		{
			name:          "wrong input name",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"inputs[0].name", `"features"`, `"input"`},
		},
		{
			name:          "wrong datatype",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"inputs[0].datatype", "FP32", "FP64"},
		},
		{
			name:          "shape does not match the data length",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4]}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"inputs[0].shape", "product 4 does not match 3 data elements"},
		},
		{
			name:          "feature count the model does not take",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[{"name":"input","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"inputs[0].shape", "[-1,4]", "[2,3]"},
		},
		{
			name:          "rank the model does not take",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[{"name":"input","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"inputs[0].shape", "[-1,4]", "[4]"},
		},
		{
			name:          "number out of FP32 range",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1e39,0.2]}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"inputs[0].data[2]", "1e39 overflows FP32"},
		},
		{
			name:          "unknown requested output",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"logits"}]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{"outputs[0].name", `"logits"`},
		},
		{
			name:          "no inputs",
			path:          "/v2/models/iris/infer",
			body:          `{"inputs":[]}`,
			wantStatus:    http.StatusBadRequest,
			wantInMessage: []string{`inputs: model input "input" is missing`},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			errorMessage(t, p.infer(t, test.path, test.body), test.wantStatus, test.wantInMessage...)
		})
	}

	require.Zero(t, p.queued(t), "a rejected request reached the queue")
}

func TestInferReturnsTheWorkersAnswer(t *testing.T) {
	p := startPlatform(t, newSetup())
	for _, path := range []string{"/v2/models/iris/infer", "/v2/models/iris/versions/1/infer"} {
		t.Run(path, func(t *testing.T) {
			answers := p.sendAsync(p.newRequest(t, http.MethodPost, path, jsonHeader(), irisBody))
			answerOnce(t, p.js, 0, irisAnswer)

			answer := receive(t, answers)
			require.Equal(t, http.StatusOK, answer.status, "body: %s", answer.body)
			require.Equal(t, "application/json", answer.header.Get("Content-Type"))
			require.JSONEq(t, irisAnswer, string(answer.body))
		})
	}
}

func TestInferPublishesARequestCloudEvent(t *testing.T) {
	p := startPlatform(t, newSetup())
	tests := []struct {
		name           string
		idempotencyKey string
	}{
		{name: "generated id"},
		{name: "Idempotency-Key is the event id", idempotencyKey: "order-42"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			header := jsonHeader()
			if test.idempotencyKey != "" {
				header.Set("Idempotency-Key", test.idempotencyKey)
			}
			sent := time.Now()
			answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", header, irisBody))
			request := answerOnce(t, p.js, 0, irisAnswer)
			require.Equal(t, http.StatusOK, receive(t, answers).status)

			headers := request.Headers()
			id := headers.Get("ce-id")
			require.NotEmpty(t, id)
			if test.idempotencyKey != "" {
				require.Equal(t, test.idempotencyKey, id)
			}
			require.Equal(t, events.MsgID("/sluice/activator", id), headers.Get(events.HeaderMsgID))
			require.Equal(t, "1.0", headers.Get("ce-specversion"))
			require.Equal(t, events.TypeInferenceRequest, headers.Get("ce-type"))
			require.Equal(t, "/sluice/activator", headers.Get("ce-source"))
			require.Equal(t, "iris", headers.Get("ce-"+events.ExtensionModel))
			require.Equal(t, "1", headers.Get("ce-"+events.ExtensionModelVersion))
			require.Equal(t, events.ContentTypeBinary, headers.Get("content-type"))
			require.NotEmpty(t, headers.Get(events.HeaderReplyTo))
			deadline, err := strconv.ParseInt(headers.Get(events.HeaderDeadline), 10, 64)
			require.NoError(t, err)
			require.WithinRange(t, time.Unix(0, deadline), sent.Add(10*time.Second), time.Now().Add(10*time.Second))
			requireQueuedInBinary(t, irisBody, request)
			require.Equal(t, events.RequestSubject("iris", "1"), request.Subject())
		})
	}
}

func TestInferPassesOnTheWorkersError(t *testing.T) {
	p := startPlatform(t, newSetup())
	tests := []struct {
		name       string
		status     int
		body       string
		wantStatus int
		wantError  string
	}{
		{
			name:       "bad input",
			status:     http.StatusBadRequest,
			body:       `{"error":"inputs[0].data[1]: the model rejects it"}`,
			wantStatus: http.StatusBadRequest,
			wantError:  "inputs[0].data[1]: the model rejects it",
		},
		{
			name:       "model failure",
			status:     http.StatusInternalServerError,
			body:       `{"error":"onnxruntime: run failed"}`,
			wantStatus: http.StatusInternalServerError,
			wantError:  "onnxruntime: run failed",
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
			answerOnce(t, p.js, test.status, test.body)
			require.Equal(t, test.wantError, errorMessage(t, receive(t, answers), test.wantStatus))
		})
	}
}

func TestModelMetadata(t *testing.T) {
	p := startPlatform(t, newSetup())
	model, err := irisModel()
	require.NoError(t, err)
	signature, err := onnxfile.ReadSignature(model)
	require.NoError(t, err)
	require.Equal(t, []oip.TensorSpec{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 4}}}, signature.Inputs)
	require.NotEmpty(t, signature.Outputs)
	for _, output := range signature.Outputs {
		require.Equal(t, int64(-1), output.Shape[0], "output %q: the batch dimension is -1", output.Name)
	}
	want := map[string]any{
		"name": "iris", "versions": []string{"1"}, "platform": "onnxruntime_onnx",
		"inputs": signature.Inputs, "outputs": signature.Outputs,
	}
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantError  string
	}{
		{name: "model", path: "/v2/models/iris", wantStatus: http.StatusOK},
		{name: "version", path: "/v2/models/iris/versions/1", wantStatus: http.StatusOK},
		{name: "unknown version", path: "/v2/models/iris/versions/9", wantStatus: http.StatusNotFound, wantError: `no version "9"`},
		{name: "unknown model", path: "/v2/models/roses", wantStatus: http.StatusNotFound, wantError: `"roses" is not deployed`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			answer := p.get(t, test.path)
			if test.wantStatus != http.StatusOK {
				require.Contains(t, errorMessage(t, answer, test.wantStatus), test.wantError)
				return
			}
			require.Equal(t, http.StatusOK, answer.status)
			wantJSON, err := json.Marshal(want)
			require.NoError(t, err)
			require.JSONEq(t, string(wantJSON), string(answer.body))
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	p := startPlatform(t, newSetup())
	tests := []struct {
		name       string
		path       string
		wantStatus int
	}{
		{name: "live", path: "/v2/health/live", wantStatus: http.StatusOK},
		{name: "ready", path: "/v2/health/ready", wantStatus: http.StatusOK},
		{name: "model ready", path: "/v2/models/iris/ready", wantStatus: http.StatusOK},
		{name: "version ready", path: "/v2/models/iris/versions/1/ready", wantStatus: http.StatusOK},
		{name: "unknown version", path: "/v2/models/iris/versions/9/ready", wantStatus: http.StatusNotFound},
		{name: "unknown model", path: "/v2/models/roses/ready", wantStatus: http.StatusNotFound},
		{name: "server metadata", path: "/v2", wantStatus: http.StatusOK},
		{name: "no route", path: "/v3/models", wantStatus: http.StatusNotFound},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			require.Equal(t, test.wantStatus, p.get(t, test.path).status)
		})
	}
}

func TestMetricsCountRequestsByFunctionAndCode(t *testing.T) {
	p := startPlatform(t, newSetup())
	answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
	answerOnce(t, p.js, 0, irisAnswer)
	require.Equal(t, http.StatusOK, receive(t, answers).status)
	require.Equal(t, http.StatusBadRequest, p.infer(t, "/v2/models/iris/infer", `{`).status)
	require.Equal(t, http.StatusNotFound, p.infer(t, "/v2/models/roses/infer", irisBody).status)

	answer := p.get(t, "/metrics")
	require.Equal(t, http.StatusOK, answer.status)
	for _, line := range []string{
		`sluice_activator_requests_total{code="200",function="iris"} 1`,
		`sluice_activator_requests_total{code="400",function="iris"} 1`,
		// an unknown name is not a label value: callers could grow the series without bound
		`sluice_activator_requests_total{code="404",function=""} 1`,
		`sluice_activator_request_duration_seconds_count{function="iris"} 2`,
		`sluice_activator_late_replies_total 0`,
	} {
		require.Contains(t, string(answer.body), line+"\n")
	}
}

func TestServerMetadataNamesTheCloudEventsExtension(t *testing.T) {
	p := startPlatform(t, newSetup())
	answer := p.get(t, "/v2")
	require.Equal(t, http.StatusOK, answer.status)
	var metadata struct {
		Name       string   `json:"name"`
		Extensions []string `json:"extensions"`
	}
	require.NoError(t, json.Unmarshal(answer.body, &metadata))
	require.Equal(t, "sluice", metadata.Name)
	require.Contains(t, metadata.Extensions, "cloudevents")
}

// A retried submission with the same Idempotency-Key is stored once: the
// retry is answered 409 Conflict instead of being scored again.
func TestDuplicateIdempotencyKeyIsAConflict(t *testing.T) {
	p := startPlatform(t, newSetup())
	header := jsonHeader()
	header.Set("Idempotency-Key", "order-42")
	first := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", header, irisBody))
	answerOnce(t, p.js, 0, irisAnswer)
	require.Equal(t, http.StatusOK, receive(t, first).status)

	retry := p.send(t, p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", header, irisBody))
	require.Contains(t, errorMessage(t, retry, http.StatusConflict), `"order-42"`)
}
