package activator_test

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
)

// irisRow is the row of irisBody as the binary tensor data extension lays it out.
var irisRow = littleEndian([]float32{5.1, 3.5, 1.4, 0.2})

// irisBinaryInput is iris's input with its 16 bytes after the JSON.
const irisBinaryInput = `{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}`

// irisFullAnswer is a worker's answer with every output of the iris model.
const irisFullAnswer = `{"model_name":"iris","model_version":"1","id":"r1","outputs":[` +
	`{"name":"probabilities","shape":[1,3],"datatype":"FP32","data":[0.5,0.25,0.25]},` +
	`{"name":"label","shape":[1],"datatype":"INT64","data":[0]},` +
	`{"name":"class","shape":[1],"datatype":"BYTES","data":["setosa"]}]}`

func littleEndian(values any) []byte {
	out, err := binary.Append(nil, binary.LittleEndian, values)
	if err != nil {
		panic(err)
	}
	return out
}

// tensorRequest returns a request body of the binary tensor data extension
// and its headers, as Triton's HTTP client sends them.
func tensorRequest(jsonHeader string, tail []byte) (http.Header, string) {
	header := http.Header{
		"Content-Type":                    {"application/octet-stream"},
		"Inference-Header-Content-Length": {strconv.Itoa(len(jsonHeader))},
	}
	return header, jsonHeader + string(tail)
}

// splitBinaryAnswer checks that answer is a 200 in the binary tensor data
// extension and returns its JSON header and the binary data after it.
func splitBinaryAnswer(t *testing.T, answer response) (string, []byte) {
	t.Helper()
	require.Equal(t, http.StatusOK, answer.status, "body: %s", answer.body)
	require.Equal(t, "application/octet-stream", answer.header.Get("Content-Type"))
	require.Equal(t, strconv.Itoa(len(answer.body)), answer.header.Get("Content-Length"))
	headerLength, err := strconv.Atoi(answer.header.Get("Inference-Header-Content-Length"))
	require.NoError(t, err)
	require.LessOrEqual(t, headerLength, len(answer.body))
	return string(answer.body[:headerLength]), answer.body[headerLength:]
}

func TestBinaryTensorData(t *testing.T) {
	p := startPlatform(t, newSetup())
	tests := []struct {
		name string
		// inferenceHeader and tail make a binary request; header and body a JSON one.
		inferenceHeader string
		tail            []byte
		header          http.Header
		body            string
		answer          string // what the worker answers
		// answerHeaderLength, when not 0, makes the worker's answer binary with this JSON header length.
		answerHeaderLength int
		// wantJSON is the JSON answer; empty: the answer is binary, wantHeader followed by wantBinary.
		wantJSON   string
		wantHeader string
		wantBinary []byte
	}{
		{
			name:            "binary input, JSON answer",
			inferenceHeader: `{"id":"r1","inputs":[` + irisBinaryInput + `]}`,
			tail:            irisRow,
			answer:          irisAnswer,
			wantJSON:        irisAnswer,
		},
		{
			name:            "binary input, one output asked in binary",
			inferenceHeader: `{"id":"r1","inputs":[` + irisBinaryInput + `],"outputs":[{"name":"label","parameters":{"binary_data":true}},{"name":"class"}]}`,
			tail:            irisRow,
			answer:          `{"model_name":"iris","model_version":"1","id":"r1","outputs":[{"name":"label","shape":[1],"datatype":"INT64","data":[2]},{"name":"class","shape":[1],"datatype":"BYTES","data":["virginica"]}]}`,
			wantHeader: `{"model_name":"iris","model_version":"1","id":"r1","outputs":[` +
				`{"name":"label","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}},` +
				`{"name":"class","shape":[1],"datatype":"BYTES","data":["virginica"]}]}`,
			wantBinary: littleEndian(int64(2)),
		},
		{
			name:            "every output in binary, as Triton's client asks when it names none",
			inferenceHeader: `{"id":"r1","inputs":[` + irisBinaryInput + `],"parameters":{"binary_data_output":true}}`,
			tail:            irisRow,
			answer:          irisFullAnswer,
			wantHeader: `{"model_name":"iris","model_version":"1","id":"r1","outputs":[` +
				`{"name":"probabilities","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}},` +
				`{"name":"label","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}},` +
				`{"name":"class","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":10}}]}`,
			wantBinary: append(append(littleEndian([]float32{0.5, 0.25, 0.25}), littleEndian(int64(0))...), append(littleEndian(uint32(6)), "setosa"...)...),
		},
		{
			name:            "a binary answer of the worker, passed back as it is",
			inferenceHeader: `{"id":"r1","inputs":[` + irisBinaryInput + `],"parameters":{"binary_data_output":true}}`,
			tail:            irisRow,
			answer: `{"model_name":"iris","model_version":"1","id":"r1","outputs":[{"name":"label","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}}]}` +
				string(littleEndian(int64(2))),
			answerHeaderLength: 147,
			wantHeader:         `{"model_name":"iris","model_version":"1","id":"r1","outputs":[{"name":"label","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}}]}`,
			wantBinary:         littleEndian(int64(2)),
		},
		{
			name:       "JSON request asking for binary outputs, published as sent",
			header:     jsonHeader(),
			body:       `{"id":"r1","parameters":{"binary_data_output":true},"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"label"}]}`,
			answer:     irisAnswer,
			wantHeader: `{"model_name":"iris","model_version":"1","id":"r1","outputs":[{"name":"label","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}}]}`,
			wantBinary: littleEndian(int64(0)),
		},
		{
			name:     "header covering a JSON body",
			header:   http.Header{"Inference-Header-Content-Length": {strconv.Itoa(len(irisBody))}},
			body:     irisBody,
			answer:   irisAnswer,
			wantJSON: irisAnswer,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			header, body := test.header, test.body
			if test.inferenceHeader != "" {
				header, body = tensorRequest(test.inferenceHeader, test.tail)
			}
			answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", header, body))
			request := takeRequest(t, p.js)
			replyData(t, p.js, request, 0, []byte(test.answer), test.answerHeaderLength)
			require.NoError(t, request.Ack())
			headerLength, err := events.InferenceHeaderLengthOf(request.Headers())
			require.NoError(t, err)
			require.Equal(t, events.ContentTypeBinary, request.Headers().Get("content-type"))
			if length := header.Get("Inference-Header-Content-Length"); length != "" {
				require.Equal(t, body, string(request.Data()), "a binary request goes to the worker as it came")
				require.Equal(t, length, strconv.FormatInt(headerLength, 10))
			} else {
				requireQueuedInBinary(t, body, request)
			}

			answer := receive(t, answers)
			if test.wantJSON != "" {
				require.Equal(t, http.StatusOK, answer.status, "body: %s", answer.body)
				require.Equal(t, "application/json", answer.header.Get("Content-Type"))
				require.Empty(t, answer.header.Get("Inference-Header-Content-Length"))
				require.JSONEq(t, test.wantJSON, string(answer.body))
				return
			}
			jsonHeader, tail := splitBinaryAnswer(t, answer)
			require.JSONEq(t, test.wantHeader, jsonHeader)
			require.Equal(t, test.wantBinary, tail)
		})
	}
}

func TestBinaryTensorDataRejectsBadRequests(t *testing.T) {
	p := startPlatform(t, newSetup())
	withLength := func(length string) http.Header {
		return http.Header{"Inference-Header-Content-Length": {length}}
	}
	header := func(jsonHeader string) http.Header {
		header, _ := tensorRequest(jsonHeader, nil)
		return header
	}
	one := func(input string) string { return `{"inputs":[` + input + `]}` }
	tests := []struct {
		name          string
		header        http.Header
		body          string
		wantStatus    int
		wantInMessage []string
	}{
		{"header not a number", withLength("abc"), irisBody, http.StatusBadRequest, []string{"Inference-Header-Content-Length", `got "abc"`}},
		{"header empty", withLength(""), irisBody, http.StatusBadRequest, []string{"Inference-Header-Content-Length", `got ""`}},
		{"header fractional", withLength("1.5"), irisBody, http.StatusBadRequest, []string{"Inference-Header-Content-Length", `got "1.5"`}},
		{"header negative", withLength("-5"), irisBody, http.StatusBadRequest, []string{"Inference-Header-Content-Length: -5 is negative"}},
		{"header zero", withLength("0"), irisBody, http.StatusBadRequest, []string{"Inference-Header-Content-Length: 0", "raw binary request"}},
		{"header beyond the body", withLength("4000"), irisBody, http.StatusBadRequest, []string{"Inference-Header-Content-Length: 4000 is beyond the end of the body"}},
		{"header twice", http.Header{"Inference-Header-Content-Length": {"10", "20"}}, irisBody, http.StatusBadRequest, []string{"Inference-Header-Content-Length: given 2 times"}},
		{"size not matching the shape", header(one(strings.Replace(irisBinaryInput, "16", "12", 1))), one(strings.Replace(irisBinaryInput, "16", "12", 1)) + string(irisRow[:12]),
			http.StatusBadRequest, []string{"inputs[0].parameters.binary_data_size", "says 12 bytes, but shape [1,4] of FP32 takes 16 bytes"}},
		{"binary data short", header(one(irisBinaryInput)), one(irisBinaryInput) + string(irisRow[:10]),
			http.StatusBadRequest, []string{"inputs[0].parameters.binary_data_size", "only 10 bytes of binary data are left"}},
		{"trailing bytes", header(one(irisBinaryInput)), one(irisBinaryInput) + string(irisRow) + "1234",
			http.StatusBadRequest, []string{"body: 4 bytes follow the binary data of the inputs"}},
		{"datatype the model does not take", header(one(`{"name":"input","shape":[1,4],"datatype":"FP64","parameters":{"binary_data_size":32}}`)),
			one(`{"name":"input","shape":[1,4],"datatype":"FP64","parameters":{"binary_data_size":32}}`) + string(littleEndian([]float64{1, 2, 3, 4})),
			http.StatusBadRequest, []string{"inputs[0].datatype", "FP32", "FP64"}},
		{"binary_data_output not a boolean", header(`{"parameters":{"binary_data_output":"yes"},"inputs":[` + irisBinaryInput + `]}`),
			`{"parameters":{"binary_data_output":"yes"},"inputs":[` + irisBinaryInput + `]}` + string(irisRow),
			http.StatusBadRequest, []string{"parameters.binary_data_output: want true or false, got string"}},
		{"binary data without the header", jsonHeader(), one(irisBinaryInput) + string(irisRow),
			http.StatusBadRequest, []string{"inputs[0].data: missing", "needs the HTTP header Inference-Header-Content-Length"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			errorMessage(t, p.send(t, p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", test.header, test.body)), test.wantStatus, test.wantInMessage...)
		})
	}

	require.Zero(t, p.queued(t), "a rejected request reached the queue")
}

func TestServerMetadataNamesTheBinaryTensorDataExtension(t *testing.T) {
	p := startPlatform(t, newSetup())
	answer := p.get(t, "/v2")
	require.Equal(t, http.StatusOK, answer.status)
	var metadata struct {
		Extensions []string `json:"extensions"`
	}
	require.NoError(t, json.Unmarshal(answer.body, &metadata))
	require.Contains(t, metadata.Extensions, "binary_tensor_data")
}

// requireQueuedInBinary checks that a JSON request went to the worker in the
// binary tensor data extension, as the same request.
func requireQueuedInBinary(t *testing.T, body string, request jetstream.Msg) {
	t.Helper()
	headerLength, err := events.InferenceHeaderLengthOf(request.Headers())
	require.NoError(t, err)
	require.Positive(t, headerLength)
	queued, err := oip.DecodeInferenceRequestBinary(request.Data(), headerLength, oip.DefaultLimits())
	require.NoError(t, err)
	sent, err := oip.DecodeInferenceRequest([]byte(body), oip.DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, sent, queued)
}
