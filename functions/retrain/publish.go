package retrain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// Publisher makes every published model version a new revision of its
// function: it deploys the function again with spec.model.uri naming the
// version, so the revision rolls out as spec.rollout says.
type Publisher struct {
	js       jetstream.JetStream
	catalog  *functions.Catalog
	deployer *functions.Deployer
	log      *slog.Logger
}

// publisherConsumer is the durable consumer of model events.
const publisherConsumer = "sluice-publisher"

// NewPublisher returns a Publisher that deploys through deployer.
func NewPublisher(js jetstream.JetStream, catalog *functions.Catalog, deployer *functions.Deployer, log *slog.Logger) *Publisher {
	return &Publisher{js: js, catalog: catalog, deployer: deployer, log: log}
}

// Run deploys published versions until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	if _, err := events.EnsureLifecycleStream(ctx, p.js); err != nil {
		return err
	}
	return events.ConsumeDurable(ctx, p.js, events.LifecycleStream, jetstream.ConsumerConfig{
		Durable:       publisherConsumer,
		Description:   "deploys published model versions as new revisions",
		FilterSubject: events.ModelSubject("*"),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * time.Minute,
		MaxDeliver:    10,
	}, p.handle)
}

// handle deploys one published version.
func (p *Publisher) handle(ctx context.Context, msg jetstream.Msg) error {
	ev, err := events.ReadEvent(ctx, msg.Headers(), msg.Data())
	if err != nil || ev.Type() != events.TypeModelPublished {
		return nil // not ours to act on
	}
	var published events.ModelPublished
	if err := json.Unmarshal(ev.Data(), &published); err != nil {
		return events.Permanent(fmt.Errorf("model published: %w", err))
	}
	fn, err := p.catalog.Get(ctx, published.Function)
	if errors.Is(err, functions.ErrNotFound) {
		return events.Permanent(err)
	}
	if err != nil {
		return err
	}
	fn.Spec.Model = functions.ModelSpec{URI: published.Object}
	deployed, err := p.deployer.Deploy(ctx, fn, nil)
	if errors.Is(err, functions.ErrNotFound) {
		return events.Permanent(err) // the object is gone
	}
	if err != nil {
		p.log.Warn("deploy a published model", "function", published.Function, "object", published.Object, "error", err)
		return err
	}
	p.log.Info("published model deployed", "function", published.Function, "object", published.Object,
		"revision", deployed.Status.Revision, "run", published.Run)
	return nil
}
