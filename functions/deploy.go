package functions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
)

// Deployer registers Functions: it stores their models, assigns revisions and
// provisions the stream and consumer each revision is served from.
type Deployer struct {
	js      jetstream.JetStream
	catalog *Catalog
	queue   events.QueueConfig
	checker ModelChecker // nil: the first worker finds out whether a model runs
}

// NewDeployer returns a Deployer that provisions queues with the given bounds.
func NewDeployer(js jetstream.JetStream, catalog *Catalog, queue events.QueueConfig) *Deployer {
	return &Deployer{js: js, catalog: catalog, queue: queue}
}

// WithChecker has every new revision's model loaded once by checker before
// the revision is registered: one that does not load is registered Failed,
// with the reason, and takes no traffic. A nil checker checks nothing.
func (d *Deployer) WithChecker(checker ModelChecker) *Deployer {
	d.checker = checker
	return d
}

// Deploy validates fn, uploads model (the bytes of spec.model.path; nil when
// spec.model.uri names an object already in the store), and registers it. A new
// revision is cut when the model or the runtime changes; otherwise the current
// revision keeps serving with the new scaling, batching and timeouts.
func (d *Deployer) Deploy(ctx context.Context, fn *Function, modelFile []byte) (*Function, error) {
	fn.Default()
	if err := fn.Validate(); err != nil {
		return nil, err
	}
	name := fn.Metadata.Name
	model, modelFile, err := d.modelVersion(ctx, fn, modelFile)
	if err != nil {
		return nil, err
	}
	if err := d.importData(ctx, fn); err != nil {
		return nil, err
	}
	var loaded *RevisionStatus // what the checker found, once a new revision needs it
	for attempt := 0; ; attempt++ {
		previous, version, err := d.catalog.entry(ctx, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if loaded == nil && (previous == nil || newRevision(previous, fn, model)) {
			loaded = d.check(fn, modelFile, model)
		}
		fn.Status = nextStatus(previous, fn, model, loaded)
		if err := fn.Status.pin(fn.Spec.Traffic); err != nil {
			return nil, err
		}
		if err := d.provision(ctx, name, fn.Status.Revision); err != nil {
			return nil, err
		}
		err = d.catalog.update(ctx, fn, version)
		if !errors.Is(err, errConflict) || attempt == 4 {
			if err != nil {
				return nil, err
			}
			return fn, nil
		}
		// another deploy of the same function won the race: decide again on its result
	}
}

// PutData uploads the base training data of fn (the bytes of
// spec.retrain.data.path) to the model store and points spec.retrain.data
// at the object, as a trainer reads it.
func (d *Deployer) PutData(ctx context.Context, fn *Function, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("spec.retrain.data.path: %q is empty", fn.Spec.Retrain.Data.Path)
	}
	object, err := d.catalog.PutData(ctx, fn.Metadata.Name, data)
	if err != nil {
		return err
	}
	fn.Spec.Retrain.Data = ModelSpec{URI: object}
	return nil
}

// maxRevisions is how many revisions a Function keeps live.
const maxRevisions = 5

// check loads the model of a new revision with the checker, if there is one,
// and returns the state to record.
func (d *Deployer) check(fn *Function, model []byte, version *ModelVersion) *RevisionStatus {
	if d.checker == nil {
		return &RevisionStatus{State: RevisionUnknown}
	}
	if err := d.checker.CheckModel(model, version.Signature, fn.Spec.Runtime); err != nil {
		return &RevisionStatus{State: RevisionFailed, Reason: err.Error()}
	}
	return &RevisionStatus{State: RevisionReady}
}

// nextStatus is the status after deploying fn (whose model is version) over
// previous; loaded holds the state of a new revision's model.
func nextStatus(previous *Function, fn *Function, version *ModelVersion, loaded *RevisionStatus) Status {
	if loaded == nil {
		loaded = &RevisionStatus{State: RevisionUnknown}
	}
	now := time.Now().UTC()
	status := Status{Revision: "1", Model: version, Generation: 1, UpdatedAt: now}
	if previous == nil {
		status.Revisions = []RevisionStatus{newRevisionStatus(status.Revision, fn, version, loaded, now)}
		return status
	}
	status.Generation = previous.Status.Generation + 1
	status.Revision = previous.Status.Revision
	status.Revisions = previous.Status.Revisions
	status.Traffic, status.Rollout, status.Retrain = previous.Status.Traffic, previous.Status.Rollout, previous.Status.Retrain
	if !newRevision(previous, fn, version) {
		return status
	}
	status.Revision = nextRevision(previous.Status.Revision)
	candidate := newRevisionStatus(status.Revision, fn, version, loaded, now)
	status.Revisions = trim(append(slices.Clone(status.Revisions), candidate), previous.Status)
	status.Traffic, status.Rollout = nil, nil // the new revision takes all traffic at once…
	if stable, ok := previous.Status.stable(); ok && fn.Spec.Rollout != nil {
		rollout := fn.Spec.Rollout.Start(stable, candidate.Name, now) // …unless it rolls out
		if candidate.State == RevisionFailed {
			rollout.Phase, rollout.Weight, rollout.Shadowing, rollout.Reason = RolloutRolledBack, 0, false, "rolled back: "+candidate.cannotRun().Error()
		}
		status.Rollout, status.Traffic = &rollout, rollout.Traffic()
	}
	return status
}

// trim keeps the newest maxRevisions revisions, and, beyond them, those the
// previous status still routes to: its traffic table's and its rollout's
// stable revision, so a rollout never loses the revision it falls back to.
func trim(revisions []RevisionStatus, previous Status) []RevisionStatus {
	excess := len(revisions) - maxRevisions
	if excess <= 0 {
		return revisions
	}
	keep := map[string]bool{}
	for _, target := range previous.TrafficTable() {
		keep[target.Revision] = true
	}
	if stable, ok := previous.stable(); ok {
		keep[stable] = true
	}
	trimmed := slices.Clone(revisions)
	for i := 0; i < len(trimmed) && excess > 0; {
		if keep[trimmed[i].Name] {
			i++
			continue
		}
		trimmed = slices.Delete(trimmed, i, i+1)
		excess--
	}
	return trimmed
}

func newRevisionStatus(name string, fn *Function, version *ModelVersion, loaded *RevisionStatus, now time.Time) RevisionStatus {
	return RevisionStatus{
		Name: name, Model: *version, Runtime: fn.Spec.Runtime, CreatedAt: now,
		State: loaded.State, Reason: loaded.Reason,
	}
}

// provision makes the function's queue and the revision's consumer, and the
// scale status bucket, which the activator reads but may not create.
func (d *Deployer) provision(ctx context.Context, name, revision string) error {
	if _, err := events.EnsureStream(ctx, d.js, name, d.queue); err != nil {
		return err
	}
	if _, err := events.EnsureScaleBucket(ctx, d.js); err != nil {
		return err
	}
	_, err := events.EnsureConsumer(ctx, d.js, name, revision, d.queue)
	return err
}

// Repair makes again the stream of fn and the consumer of each of its live
// revisions where they are gone (deleted by an operator, lost in a restore),
// and returns the revisions whose queue it made again: their workers take
// requests again as soon as their consumer is back. What exists is left as it is.
func (d *Deployer) Repair(ctx context.Context, fn *Function) (repaired []string, _ error) {
	name := fn.Metadata.Name
	for _, revision := range fn.Status.Revisions {
		_, err := d.js.Consumer(ctx, events.StreamName(name), events.ConsumerName(revision.Name))
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			if _, gone := d.catalog.Get(ctx, name); errors.Is(gone, ErrNotFound) {
				return repaired, nil // deleted since it was read: its queue stays gone
			}
			if err = d.provision(ctx, name, revision.Name); err == nil {
				repaired = append(repaired, revision.Name)
			}
		}
		if err != nil {
			return repaired, fmt.Errorf("repair the queue of %s revision %s: %w", name, revision.Name, err)
		}
	}
	return repaired, nil
}

// RepairEvery repairs every Function of the catalog each interval until ctx ends.
func (d *Deployer) RepairEvery(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	events.Every(ctx, interval, func() {
		fns, err := d.catalog.List(ctx)
		if err != nil {
			log.Warn("repair queues: list functions", "error", err)
			return
		}
		for _, fn := range fns {
			repaired, err := d.Repair(ctx, fn)
			if len(repaired) > 0 {
				log.Warn("made the queue of revisions again: it was gone", "function", fn.Metadata.Name, "revisions", repaired)
			}
			if err != nil {
				log.Warn("repair queues", "function", fn.Metadata.Name, "error", err)
			}
		}
	})
	return nil
}

// Delete removes a Function and its queue. Its objects in the model store
// stay (Catalog.DeleteObjectsOf removes them): a Function applied again may
// name them.
func (d *Deployer) Delete(ctx context.Context, name string) error {
	if err := d.catalog.Delete(ctx, name); err != nil {
		return err
	}
	return events.DeleteStream(ctx, d.js, name)
}

// modelVersion stores the model of fn, or finds it in the store, and returns
// its version and bytes.
func (d *Deployer) modelVersion(ctx context.Context, fn *Function, model []byte) (*ModelVersion, []byte, error) {
	spec := fn.Spec.Model
	if isURL(spec.URI) {
		return d.importModel(ctx, fn)
	}
	if spec.URI != "" {
		version, model, err := d.catalog.ModelFromStore(ctx, spec.URI)
		if err == nil && spec.SHA256 != "" && version.SHA256 != spec.SHA256 {
			err = fmt.Errorf("spec.model.sha256: %s is %s", spec.URI, version.SHA256)
		}
		return version, model, err
	}
	if len(model) == 0 {
		return nil, nil, fmt.Errorf("spec.model.path: %q is empty", spec.Path)
	}
	if spec.SHA256 != "" {
		if err := CheckSHA256(model, spec.SHA256); err != nil {
			return nil, nil, fmt.Errorf("spec.model.sha256: %s: %w", spec.Path, err)
		}
	}
	version, err := d.catalog.PutModel(ctx, fn.Metadata.Name, model, nil)
	return version, model, err
}

// MaxModelBytes bounds a model, or base data, imported from an http(s) URL.
const MaxModelBytes = 2 << 30

// importModel downloads the model at spec.model.uri, an http(s) URL, checks
// it against spec.model.sha256 and stores it in the model store; a model
// stored already under that sha256 is not downloaded again.
func (d *Deployer) importModel(ctx context.Context, fn *Function) (*ModelVersion, []byte, error) {
	spec := fn.Spec.Model
	if version, model, err := d.catalog.ModelFromStore(ctx, fn.Metadata.Name+"/"+spec.SHA256+".onnx"); err == nil {
		return version, model, nil
	}
	model, err := download(ctx, spec, "spec.model")
	if err != nil {
		return nil, nil, err
	}
	version, err := d.catalog.PutModel(ctx, fn.Metadata.Name, model, nil)
	return version, model, err
}

// importData stores the base data at spec.retrain.data.uri, when that is an
// http(s) URL, in the model store as DataObject names it, unless it is there.
func (d *Deployer) importData(ctx context.Context, fn *Function) error {
	if fn.Spec.Retrain == nil || !isURL(fn.Spec.Retrain.Data.URI) {
		return nil
	}
	if _, err := d.catalog.models.GetInfo(ctx, DataObject(fn)); err == nil {
		return nil
	}
	data, err := download(ctx, fn.Spec.Retrain.Data, "spec.retrain.data")
	if err != nil {
		return err
	}
	_, err = d.catalog.PutData(ctx, fn.Metadata.Name, data)
	return err
}

// DataObject is the object of the model store that holds fn's base data:
// spec.retrain.data.uri, or, for an http(s) URL, where Deploy stored it.
func DataObject(fn *Function) string {
	data := fn.Spec.Retrain.Data
	if isURL(data.URI) {
		return dataObject(fn.Metadata.Name, data.SHA256)
	}
	return data.URI
}

// download fetches spec.URI, an http(s) URL, and checks it against
// spec.SHA256; field names spec in errors.
func download(ctx context.Context, spec ModelSpec, field string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.URI, nil)
	if err != nil {
		return nil, fmt.Errorf("%s.uri: %w", field, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s.uri: download: %w", field, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s.uri: download: %s answered %s", field, spec.URI, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxModelBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s.uri: download: %w", field, err)
	case len(body) > MaxModelBytes:
		return nil, fmt.Errorf("%s.uri: %s is larger than %d bytes", field, spec.URI, MaxModelBytes)
	}
	if err := CheckSHA256(body, spec.SHA256); err != nil {
		return nil, fmt.Errorf("%s.sha256: what %s serves: %w", field, spec.URI, err)
	}
	return body, nil
}

func newRevision(previous, next *Function, version *ModelVersion) bool {
	return previous.Status.Model == nil ||
		previous.Status.Model.SHA256 != version.SHA256 ||
		previous.Spec.Runtime != next.Spec.Runtime
}

func nextRevision(revision string) string {
	n, err := strconv.Atoi(revision)
	if err != nil {
		return "1"
	}
	return strconv.Itoa(n + 1)
}
