package activator

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// This file is the activator's side of the binary tensor data extension
// (what Triton's HTTP client sends by default). A binary request goes on the
// queue as it came, and a worker answers it in binary when it asks for binary
// outputs, which the activator passes back as they are. A JSON request that
// asks for binary outputs gets the worker's JSON answer written in binary.

// decodeInfer reads and checks an infer body against fn's model. It returns
// the body to queue, in the binary tensor data extension, with the length of
// its JSON inference header: a binary body as it came, a JSON one with every
// input written in binary, so the worker takes the elements as bytes instead
// of parsing their text a second time (a JSON image is three times the size
// of its binary form, too). It also returns which outputs the caller wants
// back in binary (nil for none).
func (a *Activator) decodeInfer(header http.Header, body []byte, fn *functions.Function) ([]byte, int, func(name string) bool, error) {
	headerLength, binary, err := inferenceHeaderLength(header)
	if err != nil {
		return nil, 0, nil, err
	}
	var req *oip.InferenceRequest
	if binary { // the worker reads the elements: the activator checks sizes and shapes
		req, err = oip.CheckInferenceRequestBinary(body, headerLength, a.cfg.Limits)
	} else {
		req, err = oip.DecodeInferenceRequest(body, a.cfg.Limits)
	}
	if err == nil {
		err = fn.Status.Model.Signature.Check(req)
	}
	if err != nil {
		return nil, 0, nil, err
	}
	binaryOutputs, err := req.BinaryOutputs()
	if err != nil {
		return nil, 0, nil, err
	}
	if binary {
		return body, int(headerLength), binaryOutputs, nil
	}
	queued, queuedHeaderLength, err := oip.AppendInferenceRequestBinary(nil, req, func(string) bool { return true })
	if err != nil {
		return nil, 0, nil, fmt.Errorf("write the request in binary: %v", err)
	}
	return queued, queuedHeaderLength, binaryOutputs, nil
}

// inferenceHeaderLength reads the header Inference-Header-Content-Length;
// binary is false when the request has none, and so is all JSON.
func inferenceHeaderLength(header http.Header) (length int64, binary bool, err error) {
	name := oip.HeaderInferenceHeaderContentLength
	values, binary := header[http.CanonicalHeaderKey(name)]
	if !binary {
		return 0, false, nil
	}
	if len(values) != 1 {
		return 0, false, &oip.FieldError{Field: name, Problem: fmt.Sprintf("given %d times, want once", len(values))}
	}
	length, err = strconv.ParseInt(strings.TrimSpace(values[0]), 10, 64)
	if err != nil {
		return 0, false, &oip.FieldError{Field: name, Problem: fmt.Sprintf("want the length in bytes of the JSON inference header, got %q", values[0])}
	}
	return length, true, nil
}

// workerAnswerLimits bound nothing but what the worker's answer itself
// holds: a model may give back more elements than a request may send, and
// the decoder allocates no more than the answer's bytes can fill.
var workerAnswerLimits = oip.Limits{MaxElements: math.MaxInt64, MaxTensors: math.MaxInt}

// writeAnswer writes the worker's answer to a call, and returns the status it
// wrote: a binary answer as it is, a JSON one with the outputs that
// binaryOutputs names in binary.
func writeAnswer(w http.ResponseWriter, reply *nats.Msg, binaryOutputs func(name string) bool) int {
	headerLength, err := events.InferenceHeaderLengthOf(reply.Header)
	if err != nil {
		return writeError(w, fmt.Errorf("read the worker's answer: %v", err))
	}
	if headerLength > 0 || binaryOutputs == nil {
		return writeBody(w, reply.Data, int(headerLength))
	}
	resp, err := oip.DecodeInferenceResponse(reply.Data, workerAnswerLimits)
	if err != nil {
		// Not the caller's fault: no %w, so it is not mapped to 400.
		return writeError(w, fmt.Errorf("read the worker's answer: %v", err))
	}
	body, bodyHeaderLength, err := oip.AppendInferenceResponseBinary(nil, resp, binaryOutputs)
	if err != nil {
		return writeError(w, fmt.Errorf("write the answer in binary: %v", err))
	}
	return writeBody(w, body, bodyHeaderLength)
}

// writeBody writes an OIP answer with status 200: JSON, or in the binary
// tensor data extension when its JSON header is headerLength bytes long.
func writeBody(w http.ResponseWriter, body []byte, headerLength int) int {
	if headerLength > 0 {
		w.Header().Set(oip.HeaderInferenceHeaderContentLength, strconv.Itoa(headerLength))
		w.Header().Set("Content-Type", events.ContentTypeBinary)
	} else {
		w.Header().Set("Content-Type", events.ContentTypeJSON)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return http.StatusOK
}
