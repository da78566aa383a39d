package activator

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// This file is the activator's side of the binary tensor data extension
// (what Triton's HTTP client sends by default). The activator converts at its
// edge: a binary request is published as the same request in plain JSON, and
// when the caller asks for binary outputs the worker's JSON answer is written
// back in binary. The queue and the workers only ever see JSON.

// decodeInfer reads and checks an infer body against fn's model. It returns
// the body to publish, which is the caller's own body unless it came in
// binary, and which outputs the caller wants back in binary (nil for none).
func (a *Activator) decodeInfer(header http.Header, body []byte, fn *functions.Function) ([]byte, func(name string) bool, error) {
	headerLength, binary, err := inferenceHeaderLength(header)
	if err != nil {
		return nil, nil, err
	}
	var req *events.InferenceRequest
	if binary {
		req, err = events.DecodeInferenceRequestBinary(body, headerLength, a.cfg.Limits)
	} else {
		req, err = events.DecodeInferenceRequest(body, a.cfg.Limits)
	}
	if err == nil {
		err = fn.Status.Model.Signature.Check(req)
	}
	if err != nil {
		return nil, nil, err
	}
	binaryOutputs, err := req.BinaryOutputs()
	if err != nil || !binary {
		return body, binaryOutputs, err
	}
	plain, err := events.AppendInferenceRequest(make([]byte, 0, 2*len(body)), req)
	if err != nil {
		return nil, nil, err
	}
	if int64(len(plain)) > a.cfg.MaxBodyBytes {
		return nil, nil, fmt.Errorf("%w: the request takes %d bytes once its binary tensor data is written as JSON, the limit is %d", errTooLarge, len(plain), a.cfg.MaxBodyBytes)
	}
	return plain, binaryOutputs, nil
}

// inferenceHeaderLength reads the header Inference-Header-Content-Length;
// binary is false when the request has none, and so is all JSON.
func inferenceHeaderLength(header http.Header) (length int64, binary bool, err error) {
	name := events.HeaderInferenceHeaderContentLength
	values, binary := header[http.CanonicalHeaderKey(name)]
	if !binary {
		return 0, false, nil
	}
	if len(values) != 1 {
		return 0, false, &events.FieldError{Field: name, Problem: fmt.Sprintf("given %d times, want once", len(values))}
	}
	length, err = strconv.ParseInt(strings.TrimSpace(values[0]), 10, 64)
	if err != nil {
		return 0, false, &events.FieldError{Field: name, Problem: fmt.Sprintf("want the length in bytes of the JSON inference header, got %q", values[0])}
	}
	return length, true, nil
}

// workerAnswerLimits bound nothing but what the worker's answer itself
// holds: a model may give back more elements than a request may send, and
// the decoder allocates no more than the answer's bytes can fill.
var workerAnswerLimits = events.Limits{MaxElements: math.MaxInt64, MaxTensors: math.MaxInt}

// writeBinaryAnswer writes the worker's JSON answer with the outputs that
// binaryOutputs names in binary, and returns the status it wrote.
func writeBinaryAnswer(w http.ResponseWriter, answer []byte, binaryOutputs func(name string) bool) int {
	resp, err := events.DecodeInferenceResponse(answer, workerAnswerLimits)
	if err != nil {
		// Not the caller's fault: no %w, so it is not mapped to 400.
		return writeError(w, fmt.Errorf("read the worker's answer: %v", err))
	}
	body, headerLength, err := events.AppendInferenceResponseBinary(nil, resp, binaryOutputs)
	if err != nil {
		return writeError(w, fmt.Errorf("write the answer in binary: %v", err))
	}
	if headerLength > 0 {
		w.Header().Set(events.HeaderInferenceHeaderContentLength, strconv.Itoa(headerLength))
		w.Header().Set("Content-Type", "application/octet-stream")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return http.StatusOK
}
