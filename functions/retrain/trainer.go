package retrain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// The trainer contract: a training run gets these environment variables,
// and ends by writing one ONNX object to the model store and publishing one
// dev.sluice.model.published event (what `sluice models push` does).
const (
	// EnvFunction names the function to train.
	EnvFunction = "SLUICE_FUNCTION"
	// EnvRun names the training run; the event's id is the run's name.
	EnvRun = "SLUICE_RUN"
	// EnvNATSURL is where NATS is, with the model store, the feedback and
	// the prediction log.
	EnvNATSURL = "SLUICE_NATS_URL"
	// EnvNATSCreds is the file of the run's NATS credentials, when NATS
	// asks for them: a user allowed only what a trainer of this function needs.
	EnvNATSCreds = "SLUICE_NATS_CREDS"
)

// heldOut is the share of every class held out to compare the new model
// with the serving one.
const heldOut = 0.2

// Scorer labels rows with a model file: the serving model, run by ONNX
// Runtime, to measure it on the rows the new model is measured on.
type Scorer interface {
	Label(model []byte, rows [][]float32) ([]string, error)
}

// ErrWorse says the new model was not published: on the held-out rows it is
// less accurate than the serving model by more than spec.retrain.maxRegression.
var ErrWorse = errors.New("the new model is worse than the serving one")

// Trained is what a training made and published.
type Trained struct {
	Version  *functions.ModelVersion
	Training functions.Training
	Data     Data
}

// Train is the default trainer: it reads the function's base data and
// feedback, holds a fifth of every class out, fits a classifier on the rest,
// measures it and the serving model (through scorer; nil skips it) on the
// held-out rows, refuses to publish a model worse by more than the policy's
// margin, and else writes it to the model store with its training record
// and publishes it.
func Train(ctx context.Context, js jetstream.JetStream, catalog *functions.Catalog, scorer Scorer, function, run string, cfg train.Config) (Trained, error) {
	fn, err := catalog.Get(ctx, function)
	if err != nil {
		return Trained{}, err
	}
	data, err := ReadData(ctx, js, catalog, fn)
	if err != nil {
		return Trained{}, err
	}
	fit, held := data.Dataset.Split(heldOut, cfg.Seed)
	classifier, _, err := train.Fit(ctx, fit, cfg)
	if err != nil {
		return Trained{}, err
	}
	rows, labels := held.Float32Rows(), held.ClassNames()
	training := functions.Training{
		Run: run, Rows: len(data.Dataset.Features), FeedbackRows: data.FeedbackRows, HeldOutRows: len(rows),
		FeedbackFrom: data.FeedbackFrom, FeedbackTo: data.FeedbackTo,
		TestAccuracy: train.Accuracy(classifier.Predict(rows), labels), ServingAccuracy: -1, TrainedAt: time.Now().UTC(),
	}
	if serving, ok := fn.Status.Primary(); ok {
		training.Parent = serving.Name
		if scorer != nil {
			training.ServingAccuracy = servingAccuracy(ctx, catalog, scorer, serving, rows, labels)
		}
	}
	if margin := fn.Spec.Retrain.MaxRegression; training.ServingAccuracy >= 0 && training.TestAccuracy < training.ServingAccuracy-margin {
		return Trained{Training: training, Data: data}, fmt.Errorf("%w: held-out accuracy %.3f against %.3f for revision %s on the same %d rows, more than %.3f lower",
			ErrWorse, training.TestAccuracy, training.ServingAccuracy, training.Parent, len(rows), margin)
	}
	baseline := train.NewBaseline(data.Dataset)
	training.Baseline = &baseline
	model, err := classifier.ONNX()
	if err != nil {
		return Trained{}, err
	}
	version, err := Publish(ctx, js, catalog, function, model, &training)
	return Trained{Version: version, Training: training, Data: data}, err
}

// servingAccuracy measures the serving revision's model on rows; -1 when it
// cannot be run on them (another input, a model that does not load).
func servingAccuracy(ctx context.Context, catalog *functions.Catalog, scorer Scorer, serving functions.RevisionStatus, rows [][]float32, labels []string) float64 {
	model, err := catalog.GetModel(ctx, serving.Model)
	if err != nil {
		return -1
	}
	predicted, err := scorer.Label(model, rows)
	if err != nil {
		return -1
	}
	return train.Accuracy(predicted, labels)
}

// Publish writes model to the model store as a new version of function and
// announces it with a dev.sluice.model.published event, which makes it a
// new revision (Publisher). It is the end of every trainer, ours or a
// user's (`sluice models push`).
func Publish(ctx context.Context, js jetstream.JetStream, catalog *functions.Catalog, function string, model []byte, training *functions.Training) (*functions.ModelVersion, error) {
	version, err := catalog.PutModel(ctx, function, model, training)
	if err != nil {
		return nil, err
	}
	if _, err := events.EnsureLifecycleStream(ctx, js); err != nil {
		return nil, err
	}
	published := events.ModelPublished{Function: function, Object: version.Object, SHA256: version.SHA256}
	id := version.SHA256
	if training != nil {
		published.Parent, published.Run = training.Parent, training.Run
		id = training.Run + "-" + version.SHA256[:12]
	}
	err = events.PublishLifecycle(ctx, js, events.Lifecycle{
		Subject: events.ModelSubject(function), Type: events.TypeModelPublished, Source: "/sluice/trainer",
		ID: id, About: function, Data: published,
	})
	return version, err
}
