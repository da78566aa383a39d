package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/functions/train"
)

// rolloutSpec is the demo function with a fast rollout policy, and a fast
// retrain one when retrainSpec is added.
const (
	rolloutSpec = `apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {name: iris}
spec:
  model: {path: ./iris.onnx}
  scaling: {scaleToZeroAfter: 2s}
  rollout: {steps: [10, 50, 100], interval: 1s, minRequests: 20, maxErrorRate: 0.05, minAccuracy: 0.8}
`
	retrainSpec = `  retrain: {data: {path: ./iris.csv}, label: species, newRows: 20}
`
)

// lifecycle is a platform up with rolloutSpec, the iris rows to send, and a
// view of its catalog.
type lifecycle struct {
	*platform
	natsURL string
	catalog *functions.Catalog
	rows    train.Dataset
}

func startLifecycle(t *testing.T, spec string) *lifecycle {
	t.Helper()
	p := startPlatformWith(t, []byte(spec))
	url := natsURL(t, p)
	nc, err := nats.Connect(url, nats.UserCredentials(os.Getenv("SLUICE_NATS_CREDS")))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	catalog, err := functions.OpenCatalog(t.Context(), js)
	require.NoError(t, err)
	file, err := os.Open("../deploy/demo/iris.csv")
	require.NoError(t, err)
	defer file.Close()
	rows, err := train.ReadCSV(file, "species")
	require.NoError(t, err)
	return &lifecycle{platform: p, natsURL: url, catalog: catalog, rows: rows}
}

func (l *lifecycle) function(t *testing.T) *functions.Function {
	t.Helper()
	fn, err := l.catalog.Get(t.Context(), "iris")
	require.NoError(t, err)
	return fn
}

// feedback sends labelled rows, or a request's id with its row's label.
func (l *lifecycle) feedback(t *testing.T, feedback events.Feedback) {
	t.Helper()
	body, err := json.Marshal(feedback)
	require.NoError(t, err)
	code, answer := l.post(t, "/v1/functions/iris/feedback", string(body), nil)
	require.Equal(t, http.StatusAccepted, code, "%s", answer)
}

// traffic is what the callers saw during a rollout: per candidate weight,
// how many answers came from each revision, and every failure.
type traffic struct {
	byWeight map[int]map[string]int
	weights  []int
	failures []string
}

// serve sends the iris rows one request each, and feedback with the true
// label of each answer, until the rollout of candidate is over or a minute
// has passed; it returns what the callers saw and the rollout's end.
func (l *lifecycle) serve(t *testing.T, candidate string) (traffic, functions.RolloutStatus) {
	t.Helper()
	seen := traffic{byWeight: map[int]map[string]int{}}
	var status functions.RolloutStatus
	for i, deadline := 0, time.Now().Add(90*time.Second); time.Now().Before(deadline); i++ {
		if i%10 == 0 {
			fn := l.function(t)
			require.NotNil(t, fn.Status.Rollout)
			status = *fn.Status.Rollout
			require.Equal(t, candidate, status.Candidate)
			if status.Done() {
				return seen, status
			}
			if !slices.Contains(seen.weights, status.Weight) {
				seen.weights = append(seen.weights, status.Weight)
				seen.byWeight[status.Weight] = map[string]int{}
			}
		}
		row := l.rows.Features[i%len(l.rows.Features)]
		body := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[%g,%g,%g,%g]}]}`, row[0], row[1], row[2], row[3])
		code, answer, id := l.infer(t, body)
		if code != http.StatusOK {
			seen.failures = append(seen.failures, fmt.Sprintf("%d %s", code, answer))
			continue
		}
		var response oipResponse
		require.NoError(t, json.Unmarshal(answer, &response))
		seen.byWeight[status.Weight][response.ModelVersion]++
		l.feedback(t, events.Feedback{RequestID: id, Labels: []string{l.rows.ClassNames()[i%len(l.rows.Features)]}})
	}
	t.Fatalf("the rollout of revision %s did not end in 90s: %+v", candidate, status)
	return seen, status
}

// infer sends one inference and returns its status, body and request id.
func (l *lifecycle) infer(t *testing.T, body string) (int, []byte, string) {
	t.Helper()
	resp, err := http.Post(l.url+"/v2/models/iris/infer", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error()), ""
	}
	defer resp.Body.Close()
	var answer json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer, resp.Header.Get("Sluice-Request-Id")
}

// TestFeedbackRetrainsAndTheNewVersionRollsOut: feedback rows start a
// training by themselves; the version it publishes takes 10, 50, then 100 %
// of the traffic, in those proportions; the old revision drains to zero;
// no caller sees a failure.
func TestFeedbackRetrainsAndTheNewVersionRollsOut(t *testing.T) {
	l := startLifecycle(t, rolloutSpec+retrainSpec)
	for i := range 20 {
		l.feedback(t, events.Feedback{Features: [][]float64{l.rows.Features[i*7]}, Labels: []string{l.rows.ClassNames()[i*7]}})
	}
	require.Eventually(t, func() bool { return l.function(t).Status.Revision == "2" }, 60*time.Second, 100*time.Millisecond,
		"20 feedback rows never published revision 2:\n%s", l.logs.String())
	fn := l.function(t)
	require.Equal(t, "new-rows", fn.Status.Retrain.Trigger)
	require.Equal(t, 20, fn.Status.Model.Training.FeedbackRows)

	seen, status := l.serve(t, "2")
	require.Equal(t, functions.RolloutPromoted, status.Phase, status.Reason)
	require.Empty(t, seen.failures, "no caller sees a failure")
	require.Equal(t, []int{10, 50, 100}, seen.weights)
	for _, weight := range seen.weights {
		answers := seen.byWeight[weight]
		total := answers["1"] + answers["2"]
		share, want := float64(answers["2"])/float64(total), float64(weight)/100
		tolerance := 4*math.Sqrt(want*(1-want)/float64(total)) + 0.05 // the weights move between reads
		require.InDelta(t, want, share, tolerance, "at weight %d%%: %v", weight, answers)
	}
	drained := func(out string) bool { // at zero, or gone from the status once drained
		for line := range strings.Lines(out) {
			if fields := strings.Fields(line); len(fields) > 4 && fields[0] == "iris" && fields[1] == "1" {
				return fields[3] == "0"
			}
		}
		return strings.Contains(out, "iris ")
	}
	out := sluice(t, "status", "--nats-url", l.natsURL)
	for deadline := time.Now().Add(30 * time.Second); !drained(out); out = sluice(t, "status", "--nats-url", l.natsURL) {
		require.True(t, time.Now().Before(deadline), "revision 1 does not drain and scale to zero:\n%s", out)
		time.Sleep(200 * time.Millisecond) // polling the status
	}
}

// TestBadVersionsRollBackAndNoCallerSeesIt: three bad versions — one that
// does not load, one that fails at inference, one that is accurate on
// nothing — each roll back by themselves, and not one request fails.
func TestBadVersionsRollBackAndNoCallerSeesIt(t *testing.T) {
	l := startLifecycle(t, rolloutSpec) // no retraining: every version comes from models push
	dir := t.TempDir()
	cases := []struct {
		name, revision, reason string
		model                  []byte
	}{
		{"does not load", "2", "cannot run", unloadableModel(t)},
		{"fails at inference", "3", "gate failed: errors Fail", failingModel(t)},
		{"accurate on nothing", "4", "gate failed: accuracy Fail", wrongModel(t, l.rows)},
	}
	failures := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, c.revision+".onnx")
			require.NoError(t, os.WriteFile(file, c.model, 0o644))
			out := sluice(t, "models", "push", "iris", file, "--nats-url", l.natsURL)
			require.Contains(t, out, "published")
			require.Eventually(t, func() bool { return l.function(t).Status.Revision == c.revision }, 30*time.Second, 50*time.Millisecond)
			seen, status := l.serve(t, c.revision)
			failures += len(seen.failures)
			require.Equal(t, functions.RolloutRolledBack, status.Phase)
			require.Contains(t, status.Reason, c.reason)
			require.Equal(t, functions.Traffic{{Revision: "1", Weight: 100}}, l.function(t).Status.Traffic)
			require.Empty(t, seen.failures, "no caller sees the candidate's failures")
		})
	}
	require.Zero(t, failures, "failed client requests across the whole run")
}

// unloadableModel has an operator ONNX Runtime does not know.
func unloadableModel(t *testing.T) []byte {
	t.Helper()
	return marshal(t, onnxfile.Graph{
		Name:    "unloadable",
		Nodes:   []onnxfile.Node{{OpType: "NoSuchOperator", Name: "nothing", Inputs: []string{"input"}, Outputs: []string{"output"}}},
		Inputs:  []onnxfile.ValueInfo{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
		Outputs: []onnxfile.ValueInfo{{Name: "output", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
	})
}

// failingModel loads, and fails on every request of iris's four features:
// it adds a vector of three.
func failingModel(t *testing.T) []byte {
	t.Helper()
	return marshal(t, onnxfile.Graph{
		Name:         "failing",
		Nodes:        []onnxfile.Node{{OpType: "Add", Name: "add", Inputs: []string{"input", "three"}, Outputs: []string{"output"}}},
		Initializers: []onnxfile.Initializer{{Name: "three", Dims: []int64{3}, Values: []float32{1, 2, 3}}},
		Inputs:       []onnxfile.ValueInfo{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, -1}}},
		Outputs:      []onnxfile.ValueInfo{{Name: "output", Datatype: oip.FP32, Shape: []int64{-1, -1}}},
	})
}

func marshal(t *testing.T, graph onnxfile.Graph) []byte {
	t.Helper()
	model, err := onnxfile.Model{Graph: graph}.Marshal()
	require.NoError(t, err)
	return model
}

// wrongModel is a classifier trained on iris with every label moved to the
// next class: it answers, and is always wrong.
func wrongModel(t *testing.T, rows train.Dataset) []byte {
	t.Helper()
	wrong := rows
	wrong.Labels = make([]int, len(rows.Labels))
	for i, label := range rows.Labels {
		wrong.Labels[i] = (label + 1) % len(rows.Classes)
	}
	classifier, _, err := train.Fit(t.Context(), wrong, train.DefaultConfig())
	require.NoError(t, err)
	model, err := classifier.ONNX()
	require.NoError(t, err)
	return model
}
