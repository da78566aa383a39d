package activator

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

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
		return "", "", writeError(w, err)
	}
	if ev.Type() == events.TypeFeedback {
		name, code := a.feedbackEvent(w, r, ev)
		return name, ev.ID(), code
	}
	name, _ := ev.Extensions()[events.ExtensionModel].(string)
	version, _ := ev.Extensions()[events.ExtensionModelVersion].(string)
	fn, err := a.lookup(r.Context(), name, version, r.Header.Get(functions.RouteKeyHeader))
	if err != nil {
		return name, ev.ID(), writeError(w, err)
	}
	req, _, err := events.DecodeRequestData(ev, a.cfg.Limits)
	if err == nil {
		err = fn.Status.Model.Signature.Check(req)
	}
	if err != nil {
		return name, ev.ID(), writeError(w, fmt.Errorf("data: %w", err))
	}
	ev.SetExtension(events.ExtensionModelVersion, fn.Status.Revision)
	if wantsAsync(r) {
		if err := a.accept(r.Context(), w, fn, ev, r.Header.Get(events.HeaderSinkURI)); err != nil {
			return name, ev.ID(), writeError(w, err)
		}
		return name, ev.ID(), http.StatusAccepted
	}
	reply, err := a.call(r.Context(), fn, ev, version != "")
	if err != nil {
		return name, ev.ID(), writeError(w, err)
	}
	response, err := events.ReadEvent(r.Context(), reply.Header, reply.Data)
	if err != nil {
		return name, ev.ID(), writeError(w, err)
	}
	ctx := r.Context()
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType == "application/cloudevents+json" {
		ctx = binding.WithForceStructured(ctx)
	} else {
		ctx = binding.WithForceBinary(ctx)
	}
	if err := cehttp.WriteResponseWriter(ctx, binding.ToMessage(response), http.StatusOK, w); err != nil {
		a.log.Warn("write cloudevent response", "function", name, "request_id", ev.ID(), "error", err)
	}
	return name, ev.ID(), http.StatusOK
}

// readEvent reads and checks a request CloudEvent, within the body limit.
func (a *Activator) readEvent(w http.ResponseWriter, r *http.Request) (*event.Event, error) {
	if err := a.limitBody(w, r); err != nil {
		return nil, err
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
