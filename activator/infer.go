package activator

import (
	"net/http"
	"time"

	"sluice.dev/sluice/events"
)

// infer serves POST /v2/models/{name}[/versions/{version}]/infer.
func (a *Activator) infer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name := r.PathValue("name")
	id, code := a.serveInfer(w, r, name)
	a.metrics.observe(a.knownName(name), code, start)
	if code >= http.StatusInternalServerError {
		a.log.Warn("infer", "function", name, "request_id", id, "status", code)
	}
}

func (a *Activator) serveInfer(w http.ResponseWriter, r *http.Request, name string) (string, int) {
	fn, err := a.lookup(name, r.PathValue("version"))
	if err != nil {
		return "", writeError(w, err)
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return "", writeError(w, err)
	}
	headerLength, binaryOutputs, err := a.decodeInfer(r.Header, body, fn)
	if err != nil {
		return "", writeError(w, err)
	}
	id := requestID(r)
	ev := requestEvent(fn, id, body, headerLength)
	if wantsAsync(r) {
		if err := a.accept(r.Context(), w, fn, ev, r.Header.Get(events.HeaderSinkURI)); err != nil {
			return id, writeError(w, err)
		}
		return id, http.StatusAccepted
	}
	reply, err := a.call(r.Context(), fn, ev)
	if err != nil {
		return id, writeError(w, err)
	}
	return id, writeAnswer(w, reply, binaryOutputs)
}

// knownName keeps metric label values to deployed functions.
func (a *Activator) knownName(name string) string {
	if _, ok := a.registry.Lookup(name); ok {
		return name
	}
	return ""
}

// modelMetadata serves GET /v2/models/{name}[/versions/{version}].
func (a *Activator) modelMetadata(w http.ResponseWriter, r *http.Request) {
	fn, err := a.lookup(r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		writeError(w, err)
		return
	}
	signature := fn.Status.Model.Signature
	writeJSON(w, http.StatusOK, map[string]any{
		"name":     fn.Metadata.Name,
		"versions": []string{fn.Status.Revision},
		"platform": "onnxruntime_onnx",
		"inputs":   signature.Inputs,
		"outputs":  signature.Outputs,
	})
}

// modelReady serves GET /v2/models/{name}/ready. A deployed function is ready
// to receive requests even at zero replicas: they wait in its queue.
func (a *Activator) modelReady(w http.ResponseWriter, r *http.Request) {
	if _, err := a.lookup(r.PathValue("name"), r.PathValue("version")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// serverReady serves GET /v2/health/ready: NATS connected and the catalog read.
func (a *Activator) serverReady(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-a.registry.Synced():
	default:
		writeError(w, errUnavailableCatalog)
		return
	}
	if !a.nc.IsConnected() {
		writeError(w, errUnavailableNATS)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// serverMetadata serves GET /v2.
func (a *Activator) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"name":       "sluice",
		"version":    Version,
		"extensions": []string{"cloudevents", "binary_tensor_data"},
	})
}
