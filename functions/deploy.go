package functions

import (
	"context"
	"errors"
	"fmt"
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
func (d *Deployer) Deploy(ctx context.Context, fn *Function, model []byte) (*Function, error) {
	fn.Default()
	if err := fn.Validate(); err != nil {
		return nil, err
	}
	name := fn.Metadata.Name
	version, err := d.modelVersion(ctx, fn, model)
	if err != nil {
		return nil, err
	}
	previous, err := d.catalog.Get(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	fn.Status = Status{Revision: "1", Model: version, Generation: 1, UpdatedAt: time.Now().UTC()}
	if previous != nil {
		fn.Status.Generation = previous.Status.Generation + 1
		fn.Status.Revision = previous.Status.Revision
		if newRevision(previous, fn) {
			fn.Status.Revision = nextRevision(previous.Status.Revision)
		}
	}
	if _, err := events.EnsureStream(ctx, d.js, name, d.queue); err != nil {
		return nil, err
	}
	if _, err := events.EnsureConsumer(ctx, d.js, name, fn.Status.Revision, d.queue); err != nil {
		return nil, err
	}
	if err := d.catalog.Put(ctx, fn); err != nil {
		return nil, err
	}
	return fn, nil
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

func newRevision(previous, next *Function) bool {
	return previous.Status.Model == nil ||
		previous.Status.Model.SHA256 != next.Status.Model.SHA256 ||
		previous.Spec.Runtime != next.Spec.Runtime
}

func nextRevision(revision string) string {
	n, err := strconv.Atoi(revision)
	if err != nil {
		return "1"
	}
	return strconv.Itoa(n + 1)
}
