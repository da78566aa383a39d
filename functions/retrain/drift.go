package retrain

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// driftWatch follows the inputs each function's serving model gets, from
// its prediction log, into a histogram over the bins of the model's
// baseline, and hands a window over once it holds enough rows.
type driftWatch struct {
	js      jetstream.JetStream
	catalog *functions.Catalog
	log     *slog.Logger

	mu        sync.Mutex // guards followed and every histogram
	functions map[string]*followed
}

// followed is one function's watch.
type followed struct {
	// from names what the baseline was taken from: a model's sha256, or the
	// base data's object when the model has no training record.
	from      string
	baseline  train.Baseline
	histogram train.Histogram
	consume   jetstream.ConsumeContext
}

func newDriftWatch(js jetstream.JetStream, catalog *functions.Catalog, log *slog.Logger) *driftWatch {
	return &driftWatch{js: js, catalog: catalog, log: log, functions: map[string]*followed{}}
}

// follow starts, or restarts on a new baseline, the watch of fn's inputs
// when its retrain policy watches drift.
func (d *driftWatch) follow(ctx context.Context, fn *functions.Function) {
	if fn.Spec.Retrain.Drift == nil {
		return
	}
	name := fn.Metadata.Name
	recorded, from := recordedBaseline(fn)
	d.mu.Lock()
	current := d.functions[name]
	d.mu.Unlock()
	if current != nil && current.from == from {
		return
	}
	baseline, err := d.baselineOf(ctx, fn, recorded)
	if err != nil {
		d.log.Warn("drift: no baseline", "function", name, "error", err)
		return
	}
	if current != nil {
		current.consume.Stop()
		<-current.consume.Closed()
	}
	watch := &followed{from: from, baseline: baseline, histogram: baseline.NewHistogram()}
	if err := d.consume(ctx, name, watch); err != nil {
		d.log.Warn("drift: follow the prediction log", "function", name, "error", err)
		return
	}
	d.mu.Lock()
	d.functions[name] = watch
	d.mu.Unlock()
}

// recordedBaseline is the baseline the serving model's trainer recorded,
// and its sha256; without one, nil and the base data's object.
func recordedBaseline(fn *functions.Function) (*train.Baseline, string) {
	if serving, ok := fn.Status.Primary(); ok && serving.Model.Training != nil && serving.Model.Training.Baseline != nil {
		return serving.Model.Training.Baseline, serving.Model.SHA256
	}
	return nil, functions.DataObject(fn)
}

// baselineOf is the recorded baseline, or the base data's.
func (d *driftWatch) baselineOf(ctx context.Context, fn *functions.Function, recorded *train.Baseline) (train.Baseline, error) {
	if recorded != nil {
		return *recorded, nil
	}
	data, err := d.catalog.GetObject(ctx, functions.DataObject(fn))
	if err != nil {
		return train.Baseline{}, err
	}
	dataset, err := train.ReadCSV(bytes.NewReader(data), fn.Spec.Retrain.Label)
	if err != nil {
		return train.Baseline{}, err
	}
	return train.NewBaseline(dataset), nil
}

// consume follows the new predictions of a function into watch's histogram.
func (d *driftWatch) consume(ctx context.Context, name string, watch *followed) error {
	stream, err := events.EnsurePredictionsStream(ctx, d.js, name)
	if err != nil {
		return err
	}
	consumer, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return err
	}
	watch.consume, err = consumer.Consume(func(msg jetstream.Msg) {
		var prediction events.Prediction
		if json.Unmarshal(msg.Data(), &prediction) != nil {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, row := range prediction.Features {
			values := make([]float32, len(row))
			for i, v := range row {
				values[i] = float32(v)
			}
			_ = watch.baseline.Add(&watch.histogram, values) // a row of another width is not this model's input
		}
	})
	return err
}

// window hands over the function's window of recent inputs once it holds
// minSamples rows, and starts the next; nil before that.
func (d *driftWatch) window(name string, minSamples int) *functions.DriftWindow {
	d.mu.Lock()
	defer d.mu.Unlock()
	watch := d.functions[name]
	if watch == nil || watch.histogram.Rows < int64(minSamples) {
		return nil
	}
	window := &functions.DriftWindow{Rows: watch.histogram.Rows, Features: watch.baseline.Drift(watch.histogram)}
	watch.histogram = watch.baseline.NewHistogram()
	return window
}

// retain ends the watches of functions not in names: gone, or no longer
// watching drift.
func (d *driftWatch) retain(names map[string]bool) {
	d.mu.Lock()
	var ended []*followed
	for name, watch := range d.functions {
		if !names[name] {
			ended = append(ended, watch)
			delete(d.functions, name)
		}
	}
	d.mu.Unlock()
	for _, watch := range ended {
		watch.consume.Stop()
		<-watch.consume.Closed()
	}
}

// stop ends every watch and waits for their callbacks.
func (d *driftWatch) stop() {
	d.mu.Lock()
	watches := d.functions
	d.functions = map[string]*followed{}
	d.mu.Unlock()
	for _, watch := range watches {
		watch.consume.Stop()
		<-watch.consume.Closed()
	}
}
