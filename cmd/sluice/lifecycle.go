package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/retrain"
	"sluice.dev/sluice/functions/rollout"
)

// repairEvery is how often sluice up makes again the queues that are gone.
const repairEvery = 5 * time.Second

// lifecyclePart runs what happens to a function's models: the retrain loop,
// which starts trainings through launcher as trainers says; the publisher, which makes each published version a new
// revision (loaded once by checker first, when there is one); the rollout
// loop, which moves traffic to it or back; the record of what workers
// report of their models; and the repair of queues that are gone.
func lifecyclePart(js jetstream.JetStream, launcher retrain.Launcher, trainers retrain.Config, checker functions.ModelChecker, reg prometheus.Registerer, log *slog.Logger) part {
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
		trainings, err := retrain.NewLoop(js, catalog, launcher, trainers, reg, log)
		if err != nil {
			return err
		}
		publisher := retrain.NewPublisher(js, catalog, deployer, log)
		group, ctx := errgroup.WithContext(ctx)
		group.Go(func() error { return rollouts.Run(ctx) })
		group.Go(func() error { return trainings.Run(ctx) })
		group.Go(func() error { return publisher.Run(ctx) })
		group.Go(func() error { return catalog.RecordReports(ctx, js.Conn(), log) })
		group.Go(func() error { return deployer.RepairEvery(ctx, repairEvery, log) })
		return group.Wait()
	}
}
