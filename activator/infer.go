package activator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
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
	fn, err := a.lookup(r.Context(), name, r.PathValue("version"), r.Header.Get(functions.RouteKeyHeader))
	if err != nil {
		return "", writeError(w, err)
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return "", writeError(w, err)
	}
	body, headerLength, binaryOutputs, err := a.decodeInfer(r.Header, body, fn)
	if err != nil {
		return "", writeError(w, err)
	}
	id, err := requestID(r)
	if err != nil {
		return "", writeError(w, err)
	}
	ev := requestEvent(fn, id, body, headerLength)
	if wantsAsync(r) {
		if err := a.accept(r.Context(), w, fn, ev, r.Header.Get(events.HeaderSinkURI)); err != nil {
			return id, writeError(w, err)
		}
		return id, http.StatusAccepted
	}
	w.Header().Set(requestIDHeader, id)
	reply, err := a.call(r.Context(), fn, ev, r.PathValue("version") != "")
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
	info, err := a.metadata(r.Context(), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// modelInfo is a model's metadata, for REST and gRPC alike.
type modelInfo struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []oip.TensorSpec `json:"inputs"`
	Outputs  []oip.TensorSpec `json:"outputs"`
	// State and Reason say why a revision's model cannot run.
	State  functions.RevisionState `json:"state,omitempty"`
	Reason string                  `json:"reason,omitempty"`
}

// metadata is the signature of the revision that serves, and every live
// revision as a version. A model that cannot run still has its metadata,
// with State Failed and ONNX Runtime's Reason.
func (a *Activator) metadata(ctx context.Context, name, version string) (modelInfo, error) {
	fn, err := a.lookup(ctx, name, version, "")
	var revision functions.RevisionStatus
	switch {
	case errors.Is(err, functions.ErrModelCannotRun):
		fn, _ = a.registry.Lookup(name) // lookup read it
		revision, _ = fn.Status.FindRevision(cmp.Or(version, fn.Status.Revision))
	case err != nil:
		return modelInfo{}, err
	default:
		revision, _ = fn.Status.FindRevision(fn.Status.Revision)
	}
	versions := make([]string, len(fn.Status.Revisions))
	for i, live := range fn.Status.Revisions {
		versions[i] = live.Name
	}
	return modelInfo{
		Name: fn.Metadata.Name, Versions: versions, Platform: "onnxruntime_onnx",
		Inputs: revision.Model.Signature.Inputs, Outputs: revision.Model.Signature.Outputs,
		State: revision.State, Reason: revision.Reason,
	}, nil
}

// modelReady serves GET /v2/models/{name}/ready. A deployed function is ready
// to receive requests even at zero replicas: they wait in its queue; one
// whose model cannot run is not (503, with the reason).
func (a *Activator) modelReady(w http.ResponseWriter, r *http.Request) {
	if _, err := a.lookup(r.Context(), r.PathValue("name"), r.PathValue("version"), ""); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// serverReady serves GET /v2/health/ready: NATS connected, the catalog
// read, the last request stored, and nothing the host knows of wrong.
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
	if failure := a.storeFailure.Load(); failure != nil && time.Since(failure.at) < storeFailureShown {
		writeError(w, fmt.Errorf("the last request was not stored: %w", failure.err))
		return
	}
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(); err != nil {
			writeError(w, fmt.Errorf("%w: %v", errUnavailable, err))
			return
		}
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
