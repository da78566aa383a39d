package retrain_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/retrain"
	"sluice.dev/sluice/functions/train"
)

// trainingPlatform is iris deployed with a retrain section on a real
// nats-server, its base data uploaded as sluice deploy does.
type trainingPlatform struct {
	natsURL  string
	js       jetstream.JetStream
	catalog  *functions.Catalog
	deployer *functions.Deployer
}

func deployForTraining(t *testing.T) *trainingPlatform {
	t.Helper()
	return deployWithRetrain(t, "{data: {path: iris.csv}, label: species}")
}

// deployWithRetrain deploys iris with the given retrain section.
func deployWithRetrain(t *testing.T, retrainSpec string) *trainingPlatform {
	t.Helper()
	srv, _, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(t.Context(), js)
	require.NoError(t, err)
	p := &trainingPlatform{natsURL: srv.ClientURL(), js: js, catalog: catalog, deployer: functions.NewDeployer(js, catalog, events.DefaultQueueConfig())}
	fn, err := functions.Parse([]byte(`metadata: {name: iris}
spec:
  model: {path: iris.onnx}
  retrain: ` + retrainSpec + `
  rollout: {steps: [10, 100], interval: 1s, minRequests: 10}
`))
	require.NoError(t, err)
	data, err := os.ReadFile("../../deploy/demo/iris.csv")
	require.NoError(t, err)
	require.NoError(t, p.deployer.PutData(t.Context(), fn, data))
	classifier, _, _, err := train.FitFile(t.Context(), "../../deploy/demo/iris.csv", "", train.DefaultConfig())
	require.NoError(t, err)
	model, err := classifier.ONNX()
	require.NoError(t, err)
	_, err = p.deployer.Deploy(t.Context(), fn, model)
	require.NoError(t, err)
	return p
}

// feedback publishes a feedback event as the activator keeps it.
func (p *trainingPlatform) feedback(t *testing.T, id string, feedback events.Feedback) {
	t.Helper()
	_, err := events.EnsureFeedbackStream(t.Context(), p.js)
	require.NoError(t, err)
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("/test")
	ev.SetType(events.TypeFeedback)
	require.NoError(t, ev.SetData(events.ContentTypeJSON, feedback))
	msg := nats.NewMsg(events.FeedbackSubject("iris"))
	require.NoError(t, events.WriteEvent(t.Context(), msg, &ev))
	_, err = p.js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
}

// perfectScorer stands for a serving model that labels every held-out row
// right, so that any model the trainer makes is worse.
type perfectScorer struct{ labels map[[4]float32]string }

func (s perfectScorer) Label(_ []byte, rows [][]float32) ([]string, error) {
	labels := make([]string, len(rows))
	for i, row := range rows {
		labels[i] = s.labels[[4]float32(row)]
	}
	return labels, nil
}

func TestTrainPublishesANewVersionThatRollsOut(t *testing.T) {
	p := deployForTraining(t)
	_, err := events.EnsurePredictionsStream(t.Context(), p.js, "iris")
	require.NoError(t, err)
	logged, _ := json.Marshal(events.Prediction{ID: "req-1", Revision: "1", Features: [][]float64{{6.1, 2.8, 4.7, 1.2}}, Labels: []string{"versicolor"}})
	_, err = p.js.Publish(t.Context(), events.PredictionSubject("iris", "req-1"), logged)
	require.NoError(t, err)
	p.feedback(t, "fb-1", events.Feedback{Features: [][]float64{{5.0, 3.4, 1.5, 0.2}, {6.7, 3.0, 5.2, 2.3}}, Labels: []string{"setosa", "virginica"}})
	p.feedback(t, "fb-2", events.Feedback{RequestID: "req-1", Labels: []string{"versicolor"}})
	p.feedback(t, "fb-3", events.Feedback{RequestID: "gone", Labels: []string{"setosa"}})

	ctx, cancel := context.WithCancel(t.Context())
	publisher := retrain.NewPublisher(p.js, p.catalog, p.deployer, slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); require.NoError(t, publisher.Run(ctx)) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	trained, err := retrain.Train(t.Context(), p.js, p.catalog, nil, "iris", "iris-train-1", train.DefaultConfig())
	require.NoError(t, err)
	require.Equal(t, 150, trained.Data.BaseRows)
	require.Equal(t, 3, trained.Data.FeedbackRows, "two rows given, one from the prediction log")
	require.Equal(t, 1, trained.Data.Skipped, "a request no longer in the log")
	require.Equal(t, 153, trained.Training.Rows)
	require.False(t, trained.Training.FeedbackFrom.IsZero(), "the feedback window is recorded")
	require.False(t, trained.Training.FeedbackTo.Before(trained.Training.FeedbackFrom))
	require.Greater(t, trained.Training.TestAccuracy, 0.85)
	require.EqualValues(t, -1, trained.Training.ServingAccuracy, "no scorer: not measured")
	require.Equal(t, "1", trained.Training.Parent)
	require.Len(t, trained.Training.Baseline.Features, 4)

	var fn *functions.Function
	require.Eventually(t, func() bool {
		fn, err = p.catalog.Get(t.Context(), "iris")
		return err == nil && fn.Status.Revision == "2"
	}, 10*time.Second, 20*time.Millisecond, "the published version becomes revision 2")
	require.Equal(t, trained.Version.SHA256, fn.Status.Model.SHA256)
	require.Equal(t, "iris-train-1", fn.Status.Model.Training.Run, "the training record travels with the version")
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 90}, {Revision: "2", Weight: 10}}, fn.Status.Traffic, "and rolls out")
}

func TestTrainRefusesAModelWorseThanTheServingOne(t *testing.T) {
	p := deployForTraining(t)
	data, err := os.ReadFile("../../deploy/demo/iris.csv")
	require.NoError(t, err)
	dataset, err := train.ReadCSV(bytesReader(data), "species")
	require.NoError(t, err)
	scorer := perfectScorer{labels: map[[4]float32]string{}}
	for i, row := range dataset.Float32Rows() {
		scorer.labels[[4]float32(row)] = dataset.ClassNames()[i]
	}
	cfg := train.DefaultConfig()
	cfg.Epochs = 3 // barely trained
	trained, err := retrain.Train(t.Context(), p.js, p.catalog, scorer, "iris", "iris-train-1", cfg)
	require.ErrorIs(t, err, retrain.ErrWorse)
	require.ErrorContains(t, err, "against 1.000 for revision 1 on the same 30 rows, more than 0.020 lower")
	require.Nil(t, trained.Version, "nothing was published")
}

func bytesReader(data []byte) *bytes.Reader { return bytes.NewReader(data) }
