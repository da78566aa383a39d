package retrain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// Data is what a training of a function learns from: its base data with the
// feedback the function kept.
type Data struct {
	Dataset train.Dataset
	// BaseRows and FeedbackRows count where the rows came from; Skipped
	// counts feedback rows left out: their request had left the prediction
	// log, or they did not have one value per feature.
	BaseRows, FeedbackRows, Skipped int
	// FeedbackFrom and FeedbackTo are when the first and the last feedback
	// read arrived: the window of data the training saw.
	FeedbackFrom, FeedbackTo time.Time
}

// ReadData reads a function's base data (spec.retrain.data, a CSV in the
// model store) and every feedback row the feedback stream keeps for it,
// taking the features of a row given by request id from the prediction log.
func ReadData(ctx context.Context, js jetstream.JetStream, catalog *functions.Catalog, fn *functions.Function) (Data, error) {
	spec := fn.Spec.Retrain
	if spec == nil {
		return Data{}, fmt.Errorf("function %s has no spec.retrain: nothing says what to train it on", fn.Metadata.Name)
	}
	if spec.Data.URI == "" {
		return Data{}, fmt.Errorf("function %s: spec.retrain.data.uri is not set (sluice deploy uploads spec.retrain.data.path)", fn.Metadata.Name)
	}
	base, err := catalog.GetObject(ctx, functions.DataObject(fn))
	if err != nil {
		return Data{}, err
	}
	dataset, err := train.ReadCSV(bytes.NewReader(base), spec.Label)
	if err != nil {
		return Data{}, fmt.Errorf("spec.retrain.data %s: %w", spec.Data.URI, err)
	}
	data := Data{Dataset: dataset, BaseRows: len(dataset.Features)}
	var features [][]float64
	var labels []string
	err = readFeedback(ctx, js, fn.Metadata.Name, func(feedback events.Feedback, arrived time.Time) error {
		if data.FeedbackFrom.IsZero() {
			data.FeedbackFrom = arrived
		}
		data.FeedbackTo = arrived
		rows := feedback.Features
		if feedback.RequestID != "" {
			prediction, err := events.ReadPrediction(ctx, js, fn.Metadata.Name, feedback.RequestID)
			if errors.Is(err, events.ErrNoPrediction) {
				data.Skipped += len(feedback.Labels)
				return nil
			}
			if err != nil {
				return err
			}
			rows = prediction.Features
		}
		for i, row := range rows {
			if i >= len(feedback.Labels) || len(row) != len(dataset.FeatureNames) {
				data.Skipped++
				continue
			}
			features, labels = append(features, row), append(labels, feedback.Labels[i])
		}
		return nil
	})
	if err != nil {
		return Data{}, err
	}
	if data.Dataset, err = dataset.Append(features, labels); err != nil {
		return Data{}, err
	}
	data.FeedbackRows = len(features)
	return data, nil
}

// readFeedback calls each with every feedback the stream keeps for function,
// oldest first, and when it arrived.
func readFeedback(ctx context.Context, js jetstream.JetStream, function string, each func(events.Feedback, time.Time) error) error {
	stream, err := events.EnsureFeedbackStream(ctx, js)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(events.FeedbackSubject(function)))
	if err != nil {
		return fmt.Errorf("read feedback of %s: %w", function, err)
	}
	left := info.State.Subjects[events.FeedbackSubject(function)]
	if left == 0 {
		return nil
	}
	consumer, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.FeedbackSubject(function)}})
	if err != nil {
		return fmt.Errorf("read feedback of %s: %w", function, err)
	}
	for left > 0 {
		batch, err := consumer.Fetch(int(min(left, 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read feedback of %s: %w", function, err)
		}
		read := 0
		for msg := range batch.Messages() {
			left, read = left-1, read+1
			ev, err := events.ReadEvent(ctx, msg.Headers(), msg.Data())
			if err != nil {
				continue // not a CloudEvent: nothing to learn from
			}
			var feedback events.Feedback
			if json.Unmarshal(ev.Data(), &feedback) != nil || feedback.Validate() != nil {
				continue
			}
			var arrived time.Time
			if meta, err := msg.Metadata(); err == nil {
				arrived = meta.Timestamp.UTC()
			}
			if err := each(feedback, arrived); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read feedback of %s: %w", function, err)
		}
		if read == 0 {
			return nil // the rest was dropped by the stream's limits meanwhile
		}
	}
	return nil
}
