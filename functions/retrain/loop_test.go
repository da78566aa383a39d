package retrain_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/retrain"
	"sluice.dev/sluice/functions/train"
)

// TestMain makes the test binary the trainer when a launcher starts it as
// one (retrain.EnvRun set): it trains and publishes as `sluice train` does.
func TestMain(m *testing.M) {
	if run := os.Getenv(retrain.EnvRun); run != "" {
		os.Exit(playTrainer(os.Getenv(retrain.EnvNATSURL), os.Getenv(retrain.EnvFunction), run))
	}
	os.Exit(m.Run())
}

func playTrainer(url, function, run string) int {
	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	catalog, err := functions.OpenCatalog(ctx, js)
	if err == nil {
		_, err = retrain.Train(ctx, js, catalog, nil, function, run, train.DefaultConfig())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startRetraining runs the retrain loop, with the test binary as the
// trainer of a process launcher, and the publisher, on a fast tick.
func (p *trainingPlatform) startRetraining(t *testing.T) {
	t.Helper()
	launcherCfg := retrain.DefaultProcessConfig()
	launcherCfg.Program = os.Args[0]
	launcher, err := retrain.NewProcessLauncher(launcherCfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	cfg := retrain.DefaultConfig()
	cfg.Tick, cfg.Env = 50*time.Millisecond, map[string]string{retrain.EnvNATSURL: p.natsURL}
	loop, err := retrain.NewLoop(p.js, p.catalog, launcher, cfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	publisher := retrain.NewPublisher(p.js, p.catalog, p.deployer, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	for _, run := range []func(context.Context) error{loop.Run, publisher.Run} {
		go func() {
			defer wg.Done()
			if err := run(ctx); ctx.Err() == nil {
				require.NoError(t, err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait(); launcher.Close() })
}

// trained waits for the function's status to say a training ended, and for
// the revision it published.
func (p *trainingPlatform) trained(t *testing.T) functions.RetrainStatus {
	t.Helper()
	fn := &functions.Function{}
	deadline := time.Now().Add(30 * time.Second)
	for fn.Status.Retrain == nil || fn.Status.Retrain.Result == "" || fn.Status.Revision != "2" {
		require.True(t, time.Now().Before(deadline), "no training published revision 2 in 30s: %+v", fn.Status.Retrain)
		time.Sleep(50 * time.Millisecond) // polling the catalog
		var err error
		fn, err = p.catalog.Get(t.Context(), "iris")
		require.NoError(t, err)
	}
	require.Regexp(t, `^run iris-train-1-[0-9a-f]{6} succeeded`, fn.Status.Retrain.Result)
	return *fn.Status.Retrain
}

// retrainEvents reads the types of the function's retrain events so far.
func (p *trainingPlatform) retrainEvents(t *testing.T) []string {
	t.Helper()
	stream, err := p.js.Stream(t.Context(), events.LifecycleStream)
	require.NoError(t, err)
	consumer, err := stream.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.RetrainSubject("iris")}})
	require.NoError(t, err)
	var types []string
	for {
		batch, err := consumer.FetchNoWait(100)
		require.NoError(t, err)
		read := 0
		for msg := range batch.Messages() {
			read++
			ev, err := events.ReadEvent(t.Context(), msg.Headers(), msg.Data())
			require.NoError(t, err)
			types = append(types, ev.Type())
		}
		if read == 0 {
			return types
		}
	}
}

func TestNewLabelledRowsStartATraining(t *testing.T) {
	p := deployWithRetrain(t, "{data: {path: iris.csv}, newRows: 4}")
	p.startRetraining(t)
	p.feedback(t, "fb-1", events.Feedback{Features: [][]float64{{5.0, 3.4, 1.5, 0.2}, {6.7, 3.0, 5.2, 2.3}}, Labels: []string{"setosa", "virginica"}})
	p.feedback(t, "fb-2", events.Feedback{Features: [][]float64{{5.1, 3.5, 1.4, 0.2}, {6.3, 3.3, 6.0, 2.5}}, Labels: []string{"setosa", "virginica"}})

	status := p.trained(t)
	require.Equal(t, retrain.TriggerNewRows, status.Trigger)
	require.EqualValues(t, 4, status.FeedbackAtStart)
	require.Equal(t, []string{events.TypeRetrainPrefix + "started", events.TypeRetrainPrefix + "succeeded"}, p.retrainEvents(t))
}

func TestCopiesOfOneRequestStartOneTraining(t *testing.T) {
	p := deployForTraining(t)
	p.startRetraining(t)
	for range 1000 {
		request := event.New()
		request.SetID("drift-alert-7")
		request.SetSource("/monitoring")
		request.SetType(events.TypeRetrainRequested)
		require.NoError(t, request.SetData(events.ContentTypeJSON, map[string]string{"reason": "drift seen upstream"}))
		msg := nats.NewMsg(events.RetrainSubject("iris"))
		require.NoError(t, events.WriteEvent(t.Context(), msg, &request))
		_, err := p.js.PublishMsg(t.Context(), msg) // no Nats-Msg-Id: the stream keeps every copy
		require.NoError(t, err)
	}
	status := p.trained(t)
	require.Equal(t, retrain.TriggerRequested, status.Trigger)
	require.Equal(t, 1, status.Runs, "one training for a thousand copies")
	require.Equal(t, []string{"/monitoring#drift-alert-7"}, status.Handled)
}

func TestDriftedInputsStartATraining(t *testing.T) {
	p := deployWithRetrain(t, "{data: {path: iris.csv}, drift: {psi: 0.25, minSamples: 40, windows: 2}}")
	p.startRetraining(t)
	_, err := events.EnsurePredictionsStream(t.Context(), p.js, "iris")
	require.NoError(t, err)
	// Inputs unlike the training data: every petal three centimetres longer.
	require.Eventually(t, func() bool {
		for i := range 20 {
			prediction, _ := json.Marshal(events.Prediction{ID: fmt.Sprint(i), Revision: "1", Features: [][]float64{{5.8, 3.0, 7.5, 1.3}, {6.1, 2.9, 8.1, 1.6}}})
			_, err := p.js.Publish(t.Context(), events.PredictionSubject("iris", fmt.Sprint(i)), prediction)
			require.NoError(t, err)
		}
		fn, err := p.catalog.Get(t.Context(), "iris")
		return err == nil && fn.Status.Retrain != nil && fn.Status.Retrain.Runs > 0
	}, 20*time.Second, 100*time.Millisecond)
	status := p.trained(t)
	require.Equal(t, retrain.TriggerDrift, status.Trigger)
}
