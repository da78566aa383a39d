package activator

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// cloudEvent serves POST /: an inference request CloudEvent in binary or
// structured mode, answered with the response CloudEvent in the same mode,
// or a feedback CloudEvent, answered 202.
// Its data is JSON, or in the binary tensor data extension with the
// oipheaderlength attribute (events.SetInferenceData); it goes to the worker
// as it came.
func (a *Activator) cloudEvent(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name, id, code := a.serveCloudEvent(w, r)
	a.metrics.observe(a.knownName(name), code, start)
	if code >= http.StatusInternalServerError {
		a.log.Warn("cloudevent", "function", name, "request_id", id, "status", code)
	}
}

func (a *Activator) serveCloudEvent(w http.ResponseWriter, r *http.Request) (string, string, int) {
	ev, err := a.readEvent(w, r)
	if err == nil {
		err = errors.Join(checkLength("id", ev.ID(), maxIDBytes), checkLength("source", ev.Source(), maxSourceBytes))
	}
	if err != nil {
		return "", "", a.writeEventError(w, r, "", err)
	}
	if ev.Type() == events.TypeFeedback {
		name, code := a.feedbackEvent(w, r, ev)
		return name, ev.ID(), code
	}
	name, _ := ev.Extensions()[events.ExtensionModel].(string)
	version, _ := ev.Extensions()[events.ExtensionModelVersion].(string)
	fn, err := a.lookup(r.Context(), name, version, r.Header.Get(functions.RouteKeyHeader))
	if err != nil {
		return name, ev.ID(), a.writeEventError(w, r, ev.ID(), err)
	}
	req, _, err := events.DecodeRequestData(ev, a.cfg.Limits)
	if err == nil {
		err = fn.Status.Model.Signature.Check(req)
	}
	if err != nil {
		return name, ev.ID(), a.writeEventError(w, r, ev.ID(), fmt.Errorf("data: %w", err))
	}
	ev.SetExtension(events.ExtensionModelVersion, fn.Status.Revision)
	if wantsAsync(r) {
		if err := a.enqueue(r.Context(), fn, ev, r.Header.Get(events.HeaderSinkURI)); err != nil {
			return name, ev.ID(), a.writeEventError(w, r, ev.ID(), err)
		}
		location := resultLocation(ev)
		w.Header().Set("Location", location)
		a.writeEvent(w, r, answerEvent(events.TypeInferenceAccepted, ev.ID(), accepted{ID: ev.ID(), Status: events.ResultPending, Location: location}), http.StatusAccepted)
		return name, ev.ID(), http.StatusAccepted
	}
	reply, err := a.call(r.Context(), fn, ev, version != "")
	if err != nil {
		return name, ev.ID(), a.writeEventError(w, r, ev.ID(), err)
	}
	response, err := events.ReadEvent(r.Context(), reply.Header, reply.Data)
	if err != nil {
		return name, ev.ID(), a.writeEventError(w, r, ev.ID(), err)
	}
	a.writeEvent(w, r, response, http.StatusOK)
	return name, ev.ID(), http.StatusOK
}

// writeEvent answers a CloudEvent request with answer and code, in the
// request's mode: structured when it came structured, else binary.
func (a *Activator) writeEvent(w http.ResponseWriter, r *http.Request, answer *event.Event, code int) {
	ctx := r.Context()
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType == "application/cloudevents+json" {
		ctx = binding.WithForceStructured(ctx)
	} else {
		ctx = binding.WithForceBinary(ctx)
	}
	if err := cehttp.WriteResponseWriter(ctx, binding.ToMessage(answer), code, w); err != nil {
		a.log.Warn("write cloudevent answer", "type", answer.Type(), "error", err)
	}
}

// writeEventError answers a CloudEvent request that failed with a
// dev.sluice.inference.error CloudEvent, {"error": "..."} as its data, and
// the status writeError would give it: a CloudEvents client reads the
// error as an event, a plain HTTP client as the status and the JSON.
func (a *Activator) writeEventError(w http.ResponseWriter, r *http.Request, requestID string, err error) int {
	code := status(err)
	writeErrorHeaders(w, code)
	a.writeEvent(w, r, answerEvent(events.TypeInferenceError, requestID, map[string]string{"error": err.Error()}), code)
	return code
}

// answerError answers a request that failed before its handler read it
// (unauthorized, too slow, too many in flight): as writeEventError does for
// a CloudEvent sent to POST /, else as writeError does.
func (a *Activator) answerError(w http.ResponseWriter, r *http.Request, err error) int {
	if r.Method == http.MethodPost && r.URL.Path == "/" {
		return a.writeEventError(w, r, r.Header.Get("Ce-Id"), err)
	}
	return writeError(w, err)
}

// answerEvent is an answer of the activator's to request requestID ("" when
// it was not read), with data as JSON.
func answerEvent(typ, requestID string, data any) *event.Event {
	answer := event.New()
	answer.SetID(uuid.NewString())
	answer.SetSource(source)
	answer.SetType(typ)
	if requestID != "" {
		answer.SetExtension(events.ExtensionRequestID, requestID)
	}
	_ = answer.SetData(event.ApplicationJSON, data) // plain structs and maps: always encode
	return &answer
}

// readEvent reads and checks a request CloudEvent, within the body limit.
func (a *Activator) readEvent(w http.ResponseWriter, r *http.Request) (*event.Event, error) {
	if err := a.limitBody(w, r); err != nil {
		return nil, err
	}
	if err := decodeHeaderValues(r.Header); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadEvent, err)
	}
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	switch {
	case errors.Is(a.bodyError(err), errTooLarge):
		return nil, a.bodyError(err)
	case err != nil:
		return nil, fmt.Errorf("%w: %s (send binary mode with ce-specversion, ce-id, ce-source, ce-type headers, or structured mode as application/cloudevents+json)", errBadEvent, oneLine(err.Error()))
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s", errBadEvent, oneLine(err.Error()))
	}
	if ev.Type() != events.TypeInferenceRequest && ev.Type() != events.TypeFeedback {
		return nil, fmt.Errorf("%w: type: want %q or %q, got %q", errBadEvent, events.TypeInferenceRequest, events.TypeFeedback, ev.Type())
	}
	if name, _ := ev.Extensions()[events.ExtensionModel].(string); name == "" {
		return nil, fmt.Errorf("%w: extension %q is required: the name of the model to run (header ce-%s in binary mode)", errBadEvent, events.ExtensionModel, events.ExtensionModel)
	}
	return ev, nil
}

// oneLine joins the lines of a multi-line message with "; ".
func oneLine(message string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(message), "\n", " ; ")), " ")
}

// decodeHeaderValues decodes the attribute headers (ce-*) of a binary-mode
// CloudEvent in place, as the HTTP protocol binding (section 3.1.3.2) says
// a receiver MUST and the CloudEvents SDK does not: a double-quoted value is
// unquoted (RFC 7230 quoted-string, backslash escapes), then percent-decoded
// once; the result must be UTF-8. A value that breaks these rules makes the
// event invalid, and the error names its header.
func decodeHeaderValues(header http.Header) error {
	for name, values := range header {
		if !strings.HasPrefix(strings.ToLower(name), "ce-") {
			continue
		}
		for i, value := range values {
			decoded, err := decodeHeaderValue(value)
			if err != nil {
				return fmt.Errorf("header %s: %w", strings.ToLower(name), err)
			}
			values[i] = decoded
		}
	}
	return nil
}

func decodeHeaderValue(value string) (string, error) {
	value = strings.TrimSpace(value)
	if strings.HasPrefix(value, `"`) {
		var unquoted strings.Builder
		closed := false
		for i := 1; i < len(value); i++ {
			switch c := value[i]; {
			case c == '\\' && i+1 < len(value):
				i++
				unquoted.WriteByte(value[i])
			case c == '"' && i == len(value)-1:
				closed = true
			case c == '"':
				return "", errors.New("a double quote inside a quoted value must be escaped")
			default:
				unquoted.WriteByte(c)
			}
		}
		if !closed {
			return "", errors.New("a quoted value must end with a double quote")
		}
		value = unquoted.String()
	}
	if !strings.Contains(value, "%") {
		if !utf8.ValidString(value) {
			return "", errors.New("not UTF-8")
		}
		return value, nil
	}
	var decoded strings.Builder
	for i := 0; i < len(value); i++ {
		if value[i] != '%' {
			decoded.WriteByte(value[i])
			continue
		}
		if i+2 >= len(value) || !isHex(value[i+1]) || !isHex(value[i+2]) {
			return "", fmt.Errorf("%q at %d is not a percent-encoded byte (%%XX)", value[i:min(i+3, len(value))], i)
		}
		b, _ := strconv.ParseUint(value[i+1:i+3], 16, 8)
		decoded.WriteByte(byte(b))
		i += 2
	}
	if !utf8.ValidString(decoded.String()) {
		return "", errors.New("its percent-decoded bytes are not UTF-8")
	}
	return decoded.String(), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
