package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/train"
)

// rolloutFixture is a real nats-server whose catalog functions are deployed to.
type rolloutFixture struct {
	url      string
	js       jetstream.JetStream
	catalog  *functions.Catalog
	deployer *functions.Deployer
}

func newRolloutFixture(t *testing.T) *rolloutFixture {
	t.Helper()
	srv, _, js := natstest.JetStream(t)
	catalog, err := functions.OpenCatalog(t.Context(), js)
	require.NoError(t, err)
	return &rolloutFixture{url: srv.ClientURL(), js: js, catalog: catalog, deployer: functions.NewDeployer(js, catalog, events.DefaultQueueConfig())}
}

// rolloutSpec is iris with a rollout policy and, optionally, more of the spec.
func rolloutSpec(more string) string {
	return "metadata: {name: iris}\nspec:\n  model: {path: iris.onnx}\n  rollout: {steps: [10, 50, 100], interval: 1m}\n" + more
}

// deploy deploys iris as yaml says with model; no worker runs it.
func (f *rolloutFixture) deploy(t *testing.T, yaml string, model []byte) *functions.Function {
	t.Helper()
	fn, err := functions.Parse([]byte(yaml))
	require.NoError(t, err)
	fn, err = f.deployer.Deploy(t.Context(), fn, model)
	require.NoError(t, err)
	return fn
}

// rollingOut deploys iris twice: revision 1 on stable, revision 2 the
// candidate of a Progressing rollout at 10 %.
func (f *rolloutFixture) rollingOut(t *testing.T, models [2][]byte) {
	t.Helper()
	f.deploy(t, rolloutSpec(""), models[0])
	fn := f.deploy(t, rolloutSpec(""), models[1])
	require.Equal(t, functions.RolloutProgressing, fn.Status.Rollout.Phase)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 90}, {Revision: "2", Weight: 10}}, fn.Status.Traffic)
}

func (f *rolloutFixture) function(t *testing.T) *functions.Function {
	t.Helper()
	fn, err := f.catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	return fn
}

// lastEvent is the latest lifecycle event on subject, and how many the stream holds.
func (f *rolloutFixture) lastEvent(t *testing.T, subject string) (ev eventSeen, stored uint64) {
	t.Helper()
	stream, err := f.js.Stream(t.Context(), events.LifecycleStream)
	require.NoError(t, err)
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	msg, err := stream.GetLastMsgForSubject(t.Context(), subject)
	require.NoError(t, err)
	read, err := events.ReadEvent(t.Context(), msg.Header, msg.Data)
	require.NoError(t, err)
	return eventSeen{ID: read.ID(), Type: read.Type(), Source: read.Source(), About: read.Subject(), Data: read.Data()}, info.State.Msgs
}

type eventSeen struct {
	ID, Type, Source, About string
	Data                    []byte
}

// rolloutModels trains the demo classifier with two seeds: two model versions.
func rolloutModels(t *testing.T) [2][]byte {
	t.Helper()
	var models [2][]byte
	for i := range models {
		cfg := train.DefaultConfig()
		cfg.Seed = uint64(i + 1)
		classifier, _, _, err := train.FitFile(t.Context(), "../../deploy/demo/iris.csv", "", cfg)
		require.NoError(t, err)
		models[i], err = classifier.ONNX()
		require.NoError(t, err)
	}
	return models
}

func TestRolloutChangesByHand(t *testing.T) {
	models := rolloutModels(t)
	cases := []struct {
		name    string
		args    []string
		out     string
		phase   functions.RolloutPhase
		stable  string
		weight  int
		traffic functions.Traffic
		event   string
		reason  string
		again   string // the error of the same command once it has run; "" for none
	}{
		{
			name: "promote", args: []string{"rollout", "promote", "iris"},
			out:   "function iris: revision 2 promoted, it takes all traffic\n",
			phase: functions.RolloutPromoted, stable: "2", weight: 100, traffic: functions.Traffic{{Revision: "2", Weight: 100}},
			event: "dev.sluice.rollout.promoted", reason: "promoted: promoted by hand",
			again: "function iris: the rollout of revision 2 is over (Promoted)",
		},
		{
			name: "abort", args: []string{"rollout", "abort", "iris"},
			out:   "function iris: revision 2 rolled back, revision 1 takes all traffic\n",
			phase: functions.RolloutRolledBack, stable: "1", weight: 0, traffic: functions.Traffic{{Revision: "1", Weight: 100}},
			event: "dev.sluice.rollout.rolled_back", reason: "rolled back: aborted by hand",
			again: "function iris: the rollout of revision 2 is over (RolledBack)",
		},
		{
			name: "set-weights", args: []string{"rollout", "set-weights", "iris", "--candidate", "30"},
			out:   "function iris: revision 2 at 30%, revision 1 at 70%; paused until promoted, aborted or set again\n",
			phase: functions.RolloutPaused, stable: "1", weight: 30, traffic: functions.Traffic{{Revision: "1", Weight: 70}, {Revision: "2", Weight: 30}},
			event: "dev.sluice.rollout.stepped", reason: "paused at weight 30%, set by hand",
		},
		{
			name: "set-weights all on the candidate", args: []string{"rollout", "set-weights", "iris", "--candidate", "100"},
			out:   "function iris: revision 2 at 100%, revision 1 at 0%; paused until promoted, aborted or set again\n",
			phase: functions.RolloutPaused, stable: "1", weight: 100, traffic: functions.Traffic{{Revision: "2", Weight: 100}},
			event: "dev.sluice.rollout.stepped", reason: "paused at weight 100%, set by hand",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRolloutFixture(t)
			f.rollingOut(t, models)

			out, err := sluice(t, f.url, tc.args...)
			require.NoError(t, err)
			require.Equal(t, tc.out, out)

			fn := f.function(t)
			status := fn.Status.Rollout
			require.Equal(t, tc.phase, status.Phase)
			require.Equal(t, tc.stable, status.Stable)
			require.Equal(t, "2", status.Candidate)
			require.Equal(t, tc.weight, status.Weight)
			require.Equal(t, tc.reason, status.Reason)
			require.Equal(t, tc.traffic, fn.Status.Traffic)

			ev, stored := f.lastEvent(t, events.RolloutSubject("iris"))
			require.Equal(t, uint64(1), stored)
			require.Equal(t, tc.event, ev.Type)
			require.Equal(t, "/sluice/cli", ev.Source)
			require.Equal(t, "iris/2", ev.About)
			var announced functions.RolloutStatus
			require.NoError(t, json.Unmarshal(ev.Data, &announced))
			require.Equal(t, tc.phase, announced.Phase)
			require.Equal(t, tc.weight, announced.Weight)

			_, err = sluice(t, f.url, tc.args...)
			if tc.again != "" {
				require.ErrorContains(t, err, tc.again)
				require.Equal(t, fn.Status, f.function(t).Status, "a rollout that is over stays as it is")
				_, stored = f.lastEvent(t, events.RolloutSubject("iris"))
				require.Equal(t, uint64(1), stored, "nothing announced")
			} else {
				require.NoError(t, err)
				_, stored = f.lastEvent(t, events.RolloutSubject("iris"))
				require.Equal(t, uint64(2), stored, "each change by hand is its own event")
			}
		})
	}
}

func TestPausedRolloutCanBePromotedOrAborted(t *testing.T) {
	models := rolloutModels(t)
	for _, action := range []struct {
		name  string
		phase functions.RolloutPhase
	}{{"promote", functions.RolloutPromoted}, {"abort", functions.RolloutRolledBack}} {
		t.Run(action.name, func(t *testing.T) {
			f := newRolloutFixture(t)
			f.rollingOut(t, models)
			_, err := sluice(t, f.url, "rollout", "set-weights", "iris", "--candidate", "50")
			require.NoError(t, err)
			_, err = sluice(t, f.url, "rollout", action.name, "iris")
			require.NoError(t, err)
			require.Equal(t, action.phase, f.function(t).Status.Rollout.Phase)
			ev, stored := f.lastEvent(t, events.RolloutSubject("iris"))
			require.Equal(t, uint64(2), stored)
			require.Equal(t, events.TypeRolloutPrefix+map[string]string{"promote": "promoted", "abort": "rolled_back"}[action.name], ev.Type)
		})
	}
}

func TestRolloutStatusCommand(t *testing.T) {
	models := rolloutModels(t)
	f := newRolloutFixture(t)
	f.deploy(t, rolloutSpec(""), models[0])
	out, err := sluice(t, f.url, "rollout", "status", "iris")
	require.NoError(t, err)
	require.Equal(t, "function iris has no rollout\n", out)

	f.deploy(t, rolloutSpec(""), models[1])
	gate := functions.RolloutGate{Name: "errors", Verdict: functions.Inconclusive, Bad: 1, Observed: 40, Good: 0.01, Worse: 0.05}
	_, err = f.catalog.Modify(t.Context(), "iris", func(fn *functions.Function) (bool, error) {
		fn.Status.Rollout.Gates = []functions.RolloutGate{gate}
		return true, nil
	})
	require.NoError(t, err)
	out, err = sluice(t, f.url, "rollout", "status", "iris")
	require.NoError(t, err)
	for _, line := range []string{
		`stable:\s+1`, `candidate:\s+2`, `phase:\s+Progressing`, `weight:\s+10%`, `step:\s+1 of 3, for \d+s`,
		`reason:\s+started at weight 10%`, `REVISION\s+WEIGHT`, `1\s+90%`, `2\s+10%`, regexp.QuoteMeta(gate.String()),
	} {
		require.Regexp(t, line, out)
	}
}

func TestPrintRollout(t *testing.T) {
	started := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	fn := &functions.Function{}
	fn.Metadata.Name = "iris"
	fn.Spec.Rollout = &functions.RolloutSpec{Steps: []int{10, 50, 100}}
	fn.Status.Rollout = &functions.RolloutStatus{
		Stable: "3", Candidate: "4", Phase: functions.RolloutProgressing, Step: 1, Weight: 50, StepStartedAt: started,
		Reason: "weight 50%: held 42s of 1m0s",
	}
	fn.Status.Traffic = fn.Status.Rollout.Traffic()
	var out strings.Builder
	require.NoError(t, printRollout(&out, fn, started.Add(42*time.Second)))
	require.Equal(t, `function:  iris
stable:    3
candidate: 4
phase:     Progressing
weight:    50%
step:      2 of 3, for 42s
reason:    weight 50%: held 42s of 1m0s
traffic:
  REVISION  WEIGHT
  3         50%
  4         50%
gates:     none judged yet
`, out.String())
}

func TestRolloutCommandErrors(t *testing.T) {
	models := rolloutModels(t)
	f := newRolloutFixture(t)
	f.deploy(t, rolloutSpec(""), models[0]) // one revision, no rollout
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"status of an unknown function", []string{"rollout", "status", "wine"}, `function "wine": not found`},
		{"promote an unknown function", []string{"rollout", "promote", "wine"}, `function "wine": not found`},
		{"abort an unknown function", []string{"rollout", "abort", "wine"}, `function "wine": not found`},
		{"set an unknown function", []string{"rollout", "set-weights", "wine", "--candidate", "20"}, `function "wine": not found`},
		{"promote without a rollout", []string{"rollout", "promote", "iris"}, "function iris has no rollout"},
		{"abort without a rollout", []string{"rollout", "abort", "iris"}, "function iris has no rollout"},
		{"weight above 100", []string{"rollout", "set-weights", "iris", "--candidate", "101"}, "--candidate: want a percent from 0 to 100, got 101"},
		{"weight below 0", []string{"rollout", "set-weights", "iris", "--candidate", "-1"}, "--candidate: want a percent from 0 to 100, got -1"},
		{"weight not a number", []string{"rollout", "set-weights", "iris", "--candidate", "half"}, `invalid argument "half"`},
		{"weight missing", []string{"rollout", "set-weights", "iris"}, `required flag(s) "candidate" not set`},
		{"no name", []string{"rollout", "promote"}, "accepts 1 arg(s), received 0"},
		{"retrain an unknown function", []string{"retrain", "wine"}, `function "wine": not found`},
		{"retrain without spec.retrain", []string{"retrain", "iris"}, "function iris has no spec.retrain: add a retrain section"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sluice(t, f.url, tc.args...)
			require.ErrorContains(t, err, tc.want)
		})
	}
	require.Nil(t, f.function(t).Status.Rollout, "no error wrote a rollout")
}

func TestRetrainCommand(t *testing.T) {
	models := rolloutModels(t)
	f := newRolloutFixture(t)
	f.deploy(t, rolloutSpec("  retrain: {data: {uri: iris/data.csv}}\n"), models[0])

	out, err := sluice(t, f.url, "retrain", "iris", "--reason", "drift seen on the dashboard")
	require.NoError(t, err)
	match := regexp.MustCompile("^retrain request (\\S+) sent for function iris: training requested; follow it with `sluice rollout status iris`\n$").FindStringSubmatch(out)
	require.NotNil(t, match, out)
	ev, stored := f.lastEvent(t, events.RetrainSubject("iris"))
	require.Equal(t, uint64(1), stored)
	require.Equal(t, eventSeen{ID: match[1], Type: events.TypeRetrainRequested, Source: "/sluice/cli", About: "iris",
		Data: []byte(`{"reason":"drift seen on the dashboard"}`)}, ev)

	_, err = sluice(t, f.url, "retrain", "iris")
	require.NoError(t, err)
	ev, stored = f.lastEvent(t, events.RetrainSubject("iris"))
	require.Equal(t, uint64(2), stored, "each request is its own event")
	require.NotEqual(t, match[1], ev.ID)
	require.JSONEq(t, `{"reason":"requested by hand"}`, string(ev.Data))
}
