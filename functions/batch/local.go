package batch

import (
	"cmp"
	"context"
	"errors"
	"time"

	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events/oip"
)

// Model runs a model in this process, as an ONNX Runtime session does.
type Model interface {
	Run(inputs []oip.Tensor) ([]oip.Tensor, error)
}

// RunLocal scores cfg.Input into cfg.Output in this process, with no queue:
// the pipeline a user would write instead of Sluice, and the anchor
// BenchmarkBatchScoring measures Run against. It reads, chunks and writes
// with Run's own code (and resumes an output as Run does); each chunk runs
// on one of models, a goroutine each, instead of going through the queue.
// cfg.RowsPerRequest is the model's batch size (0 picks as Run does).
func RunLocal(ctx context.Context, cfg Config, signature oip.Signature, models []Model) (Report, error) {
	start := time.Now()
	cfg.Function = cmp.Or(cfg.Function, "local")
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if len(models) == 0 {
		return Report{}, errors.New("batch: RunLocal needs a model")
	}
	in, err := inputOf(signature)
	if err != nil {
		return Report{}, err
	}
	if cfg.RowsPerRequest == 0 {
		cfg.RowsPerRequest = autoRows(in)
	}
	j := &job{cfg: cfg, input: in, batchID: "local"}
	if err := j.open(); err != nil {
		return Report{}, err
	}
	group, groupCtx := errgroup.WithContext(ctx)
	scoring := make(chan *chunk, len(models))
	chunks := make(chan *chunk, cfg.InFlight)
	slots := make(chan struct{}, cfg.InFlight)
	group.Go(func() error {
		defer close(chunks)
		defer close(scoring)
		for index := 0; ; index++ {
			c, err := j.readChunk(index)
			if err != nil || c == nil {
				return err
			}
			if c.skip == c.rows {
				continue // written by an earlier run
			}
			if !sendChunk(groupCtx, slots, struct{}{}) {
				return groupCtx.Err()
			}
			if c.good == 0 {
				c.resolve(nil, 0, nil)
			} else if !sendChunk(groupCtx, scoring, c) {
				return groupCtx.Err()
			}
			if !sendChunk(groupCtx, chunks, c) {
				return groupCtx.Err()
			}
		}
	})
	for _, model := range models {
		group.Go(func() error {
			for c := range scoring {
				outputs, err := model.Run([]oip.Tensor{c.tensor(in)})
				c.scored = outputs
				c.resolve(nil, 0, err)
			}
			return nil
		})
	}
	group.Go(func() error { return j.write(groupCtx, chunks, slots, nil) })
	err = group.Wait()
	if closeErr := j.close(); err == nil {
		err = closeErr
	}
	return j.finish(start), err
}

// sendChunk sends value on ch unless ctx ends first.
func sendChunk[T any](ctx context.Context, ch chan<- T, value T) bool {
	select {
	case ch <- value:
		return true
	case <-ctx.Done():
		return false
	}
}
