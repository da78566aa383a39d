package autoscaler

import (
	"context"
	"log/slog"
	"time"

	"sluice.dev/sluice/functions"
)

// scaler sets the number of workers of one revision of a function.
type scaler interface {
	Scale(ctx context.Context, function, revision string, replicas int) error
}

// catalogView is the autoscaler's read of the deployed functions.
type catalogView interface {
	Names() []string
	Lookup(name string) (*functions.Function, bool)
}

// KeepWarm keeps the current revision of every deployed function at
// max(1, minReplicas) workers and every other revision at zero, checking
// every interval until ctx ends. It is a fixed policy with no queue-depth input.
func KeepWarm(ctx context.Context, view catalogView, scale scaler, interval time.Duration, log *slog.Logger) error {
	running := map[revisionKey]int{}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		want := map[revisionKey]int{}
		for _, name := range view.Names() {
			if fn, ok := view.Lookup(name); ok && fn.Status.Revision != "" {
				want[revisionKey{name, fn.Status.Revision}] = max(1, fn.Spec.Scaling.MinReplicas)
			}
		}
		for key := range running {
			if _, ok := want[key]; !ok {
				want[key] = 0
			}
		}
		for key, replicas := range want {
			if running[key] == replicas {
				continue
			}
			if err := scale.Scale(ctx, key.function, key.revision, replicas); err != nil {
				log.Warn("scale", "function", key.function, "revision", key.revision, "replicas", replicas, "error", err)
				continue
			}
			log.Info("scaled", "function", key.function, "revision", key.revision, "from", running[key], "to", replicas)
			running[key] = replicas
			if replicas == 0 {
				delete(running, key)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}
