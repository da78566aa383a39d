package functions

import (
	"context"
	"errors"
	"fmt"
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
}

// NewDeployer returns a Deployer that provisions queues with the given bounds.
func NewDeployer(js jetstream.JetStream, catalog *Catalog, queue events.QueueConfig) *Deployer {
	return &Deployer{js: js, catalog: catalog, queue: queue}
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
	model, err := d.modelVersion(ctx, fn, modelFile)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		previous, version, err := d.catalog.entry(ctx, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		fn.Status = nextStatus(previous, fn, model)
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

// maxRevisions is how many revisions a Function keeps live.
const maxRevisions = 5

// nextStatus is the status after deploying fn (whose model is version) over previous.
func nextStatus(previous *Function, fn *Function, version *ModelVersion) Status {
	now := time.Now().UTC()
	status := Status{Revision: "1", Model: version, Generation: 1, UpdatedAt: now}
	if previous != nil {
		status.Generation = previous.Status.Generation + 1
		status.Revision = previous.Status.Revision
		status.Revisions = previous.Status.Revisions
		if newRevision(previous, fn, version) {
			status.Revision = nextRevision(previous.Status.Revision)
		}
	}
	if _, ok := status.FindRevision(status.Revision); !ok {
		status.Revisions = append(slices.Clone(status.Revisions), RevisionStatus{
			Name: status.Revision, Model: *version, Runtime: fn.Spec.Runtime, CreatedAt: now,
		})
	}
	if excess := len(status.Revisions) - maxRevisions; excess > 0 {
		status.Revisions = status.Revisions[excess:]
	}
	return status
}

func (d *Deployer) provision(ctx context.Context, name, revision string) error {
	if _, err := events.EnsureStream(ctx, d.js, name, d.queue); err != nil {
		return err
	}
	_, err := events.EnsureConsumer(ctx, d.js, name, revision, d.queue)
	return err
}

// Delete removes a Function and its queue.
func (d *Deployer) Delete(ctx context.Context, name string) error {
	if err := d.catalog.Delete(ctx, name); err != nil {
		return err
	}
	return events.DeleteStream(ctx, d.js, name)
}

func (d *Deployer) modelVersion(ctx context.Context, fn *Function, model []byte) (*ModelVersion, error) {
	if fn.Spec.Model.URI != "" {
		version, _, err := d.catalog.ModelFromStore(ctx, fn.Spec.Model.URI)
		return version, err
	}
	if len(model) == 0 {
		return nil, fmt.Errorf("spec.model.path: %q is empty", fn.Spec.Model.Path)
	}
	return d.catalog.PutModel(ctx, fn.Metadata.Name, model)
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
