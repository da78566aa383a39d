package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/retrain"
	"sluice.dev/sluice/functions/rollout"
)

// lifecyclePart runs what happens to a function's models: the retrain loop,
// which starts trainings through launcher with trainerEnv added to their
// environment; the publisher, which makes each published version a new
// revision (loaded once by checker first, when there is one); and the
// rollout loop, which moves traffic to it or back.
func lifecyclePart(js jetstream.JetStream, launcher retrain.Launcher, trainerEnv map[string]string, checker functions.ModelChecker, reg prometheus.Registerer, log *slog.Logger) part {
	return func(ctx context.Context, _ *functions.Registry) error {
		catalog, err := functions.OpenCatalog(ctx, js)
		if err != nil {
			return err
		}
		deployer := functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).WithChecker(checker)
		rollouts, err := rollout.NewLoop(js, catalog, rollout.DefaultConfig(), reg, log)
		if err != nil {
			return err
		}
		cfg := retrain.DefaultConfig()
		cfg.Env = trainerEnv
		trainings, err := retrain.NewLoop(js, catalog, launcher, cfg, reg, log)
		if err != nil {
			return err
		}
		publisher := retrain.NewPublisher(js, catalog, deployer, log)
		group, ctx := errgroup.WithContext(ctx)
		group.Go(func() error { return rollouts.Run(ctx) })
		group.Go(func() error { return trainings.Run(ctx) })
		group.Go(func() error { return publisher.Run(ctx) })
		return group.Wait()
	}
}
