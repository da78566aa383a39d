package activator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// Errors the activator answers with; status maps each to its HTTP status.
var (
	errNotFound    = errors.New("not found")
	errTooLarge    = errors.New("request body too large")
	errQueueFull   = errors.New("queue full")
	errOverloaded  = errors.New("overloaded")
	errTimeout     = errors.New("timed out")
	errSlowBody    = errors.New("request body too slow")
	errBadEvent    = errors.New("bad cloudevent")
	errBadRequest  = errors.New("bad request")
	errDuplicate   = errors.New("duplicate request")
	errUnavailable = errors.New("unavailable")
)

// retryAfter is what a 429 or 503 tells the caller to wait, in seconds.
const retryAfter = 1

// workerError is an error the worker replied with, with its HTTP status.
type workerError struct {
	status  int
	message string
}

func (e *workerError) Error() string { return e.message }

// status is the one place that maps an error to an HTTP status.
func status(err error) int {
	var field *oip.FieldError
	var worker *workerError
	switch {
	case errors.As(err, &worker):
		return worker.status
	case errors.As(err, &field), errors.Is(err, errBadEvent), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errNotFound), errors.Is(err, functions.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errDuplicate):
		return http.StatusConflict
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errSlowBody):
		return http.StatusRequestTimeout
	case errors.Is(err, errQueueFull), errors.Is(err, errOverloaded):
		return http.StatusTooManyRequests
	case errors.Is(err, errTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, errUnavailable), errors.Is(err, functions.ErrModelCannotRun):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return 499 // the client closed the request
	}
	return http.StatusInternalServerError
}

// writeError answers {"error": "..."} with the error's status.
func writeError(w http.ResponseWriter, err error) int {
	code := status(err)
	writeErrorHeaders(w, code)
	writeJSON(w, code, map[string]string{"error": err.Error()})
	return code
}

// writeErrorHeaders sets the headers an error answer of code carries.
func writeErrorHeaders(w http.ResponseWriter, code int) {
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

var (
	errUnavailableCatalog = fmt.Errorf("%w: the function catalog has not been read yet", errUnavailable)
	errUnavailableNATS    = fmt.Errorf("%w: not connected to NATS", errUnavailable)
)
