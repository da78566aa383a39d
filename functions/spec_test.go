package functions_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions"
)

const irisYAML = `
apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {name: iris}
spec:
  model: {path: ./models/iris.onnx}
  runtime: {device: cpu}
  scaling: {minReplicas: 0, maxReplicas: 4, targetQueueDepth: 16, activationQueueDepth: 1, scaleToZeroAfter: 30s}
  batching: {maxBatchSize: 32, maxDelay: 2ms}
  timeouts: {request: 30s}
  rollout: {steps: [10, 50, 100], interval: 1m, minRequests: 200, maxErrorRate: 0.01, maxLatencyP99: 250ms, minAccuracy: 0.9}
  retrain: {data: {path: ./iris.csv}, label: species, newRows: 100, drift: {psi: 0.25, minSamples: 500, windows: 3}, minAccuracy: 0.8, cooldown: 10m, deadline: 30m}
`

func TestParseTheDocumentedExample(t *testing.T) {
	fn, err := functions.Parse([]byte(irisYAML))
	require.NoError(t, err)
	require.NoError(t, fn.Validate())
	require.Equal(t, "iris", fn.Metadata.Name)
	require.Equal(t, "./models/iris.onnx", fn.Spec.Model.Path)
	require.Equal(t, 4, fn.Spec.Scaling.MaxReplicas)
	require.Equal(t, 30*time.Second, fn.Spec.Scaling.ScaleToZeroAfter.Duration)
	require.Equal(t, 2*time.Millisecond, fn.Spec.Batching.MaxDelay.Duration)
	require.Equal(t, []int{10, 50, 100}, fn.Spec.Rollout.Steps)
	require.Equal(t, 250*time.Millisecond, fn.Spec.Rollout.MaxLatencyP99.Duration)
	require.Equal(t, &functions.DriftSpec{PSI: 0.25, MinSamples: 500, Windows: 3}, fn.Spec.Retrain.Drift)
	require.Equal(t, 100, fn.Spec.Retrain.MinFeedback)
}

func TestDefaults(t *testing.T) {
	fn, err := functions.Parse([]byte("metadata: {name: tiny}\nspec: {model: {uri: tiny/abc.onnx}}\n"))
	require.NoError(t, err)
	require.NoError(t, fn.Validate())
	require.Equal(t, functions.APIVersion, fn.APIVersion)
	require.Equal(t, functions.Kind, fn.Kind)
	require.Equal(t, functions.DeviceCPU, fn.Spec.Runtime.Device)
	require.Equal(t, 1, fn.Spec.Runtime.Threads)
	require.Equal(t, 0, fn.Spec.Scaling.MinReplicas)
	require.Equal(t, 4, fn.Spec.Scaling.MaxReplicas)
	require.Equal(t, 16, fn.Spec.Scaling.TargetQueueDepth)
	require.Equal(t, 1, fn.Spec.Scaling.ActivationQueueDepth)
	require.Equal(t, 30*time.Second, fn.Spec.Scaling.ScaleToZeroAfter.Duration)
	require.Equal(t, 32, fn.Spec.Batching.MaxBatchSize)
	require.Equal(t, 2*time.Millisecond, fn.Spec.Batching.MaxDelay.Duration)
	require.Equal(t, 30*time.Second, fn.Spec.Timeouts.Request.Duration)
	require.Nil(t, fn.Spec.Rollout, "without a rollout a new revision takes all traffic at once")

	fn, err = functions.Parse([]byte("metadata: {name: tiny}\nspec: {model: {uri: tiny/abc.onnx}, rollout: {}}\n"))
	require.NoError(t, err)
	require.NoError(t, fn.Validate())
	require.Equal(t, &functions.RolloutSpec{
		Steps: []int{10, 50, 100}, Interval: functions.Duration{Duration: time.Minute}, MinRequests: 200, MaxErrorRate: 0.01,
	}, fn.Spec.Rollout)
}

func TestParseErrorsNameTheField(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown field", "metadata: {name: a}\nspec: {model: {path: a.onnx}, scailing: {}}\n", `spec.scailing: unknown field (did you mean "scaling"?)`},
		{"unknown nested field", "metadata: {name: a}\nspec: {model: {path: a.onnx}, scaling: {maxReplica: 3}}\n", `spec.scaling.maxReplica: unknown field (did you mean "maxReplicas"?)`},
		{"unknown field in a list", "metadata: {name: a}\nspec: {model: {path: a.onnx}, traffic: [{revision: \"1\", wieght: 100}]}\n", `spec.traffic[0].wieght: unknown field (did you mean "weight"?)`},
		{"unknown field like none", "metadata: {name: a}\nzzzzzzzz: 1\n", `zzzzzzzz: unknown field`},
		{"bad duration", "metadata: {name: a}\nspec: {model: {path: a.onnx}, timeouts: {request: soon}}\n", `"soon"`},
		{"text for number", "metadata: {name: a}\nspec: {model: {path: a.onnx}, batching: {maxBatchSize: many}}\n", "maxBatchSize"},
		{"not yaml", "metadata: [", "function"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := functions.Parse([]byte(tc.yaml))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	cases := []struct {
		name   string
		change func(*functions.Function)
		want   string
	}{
		{"apiVersion", func(f *functions.Function) { f.APIVersion = "v1" }, "apiVersion: must be"},
		{"kind", func(f *functions.Function) { f.Kind = "Pod" }, "kind: must be"},
		{"name", func(f *functions.Function) { f.Metadata.Name = "Iris_1" }, "metadata.name"},
		{"no model", func(f *functions.Function) { f.Spec.Model = functions.ModelSpec{} }, "spec.model: set path"},
		{"both models", func(f *functions.Function) { f.Spec.Model.URI = "x" }, "spec.model: set path or uri, not both"},
		{"not onnx", func(f *functions.Function) { f.Spec.Model.Path = "m.pt" }, "spec.model.path"},
		{"model sha256", func(f *functions.Function) { f.Spec.Model.SHA256 = "ABC" }, `spec.model.sha256: want 64 lower-case hex digits, got "ABC"`},
		{"traffic weight", func(f *functions.Function) { f.Spec.Traffic = functions.Traffic{{Revision: "1", Weight: 101}} }, "spec.traffic[0].weight: must be between 0 and 100, got 101"},
		{"device", func(f *functions.Function) { f.Spec.Runtime.Device = "tpu" }, `spec.runtime.device: must be "cpu" or "gpu", got "tpu"`},
		{"threads", func(f *functions.Function) { f.Spec.Runtime.Threads = 100 }, "spec.runtime.threads"},
		{"minReplicas", func(f *functions.Function) { f.Spec.Scaling.MinReplicas = -1 }, "spec.scaling.minReplicas"},
		{"maxReplicas below min", func(f *functions.Function) { f.Spec.Scaling.MinReplicas = 5 }, "spec.scaling.maxReplicas"},
		{"targetQueueDepth", func(f *functions.Function) { f.Spec.Scaling.TargetQueueDepth = -2 }, "spec.scaling.targetQueueDepth"},
		{"activationQueueDepth", func(f *functions.Function) { f.Spec.Scaling.ActivationQueueDepth = -1 }, "spec.scaling.activationQueueDepth"},
		{"scaleToZeroAfter", func(f *functions.Function) { f.Spec.Scaling.ScaleToZeroAfter.Duration = time.Millisecond }, "spec.scaling.scaleToZeroAfter"},
		{"maxBatchSize", func(f *functions.Function) { f.Spec.Batching.MaxBatchSize = 10000 }, "spec.batching.maxBatchSize"},
		{"maxDelay", func(f *functions.Function) { f.Spec.Batching.MaxDelay.Duration = time.Minute }, "spec.batching.maxDelay"},
		{"request timeout", func(f *functions.Function) { f.Spec.Timeouts.Request.Duration = 2 * time.Hour }, "spec.timeouts.request"},
		{"rollout steps falling", func(f *functions.Function) { f.Spec.Rollout.Steps = []int{50, 10, 100} }, "spec.rollout.steps[1]: must rise from 1 to 100, got [50 10 100]"},
		{"rollout steps short of 100", func(f *functions.Function) { f.Spec.Rollout.Steps = []int{10, 50} }, "spec.rollout.steps: must end at 100"},
		{"rollout interval", func(f *functions.Function) { f.Spec.Rollout.Interval.Duration = time.Millisecond }, "spec.rollout.interval"},
		{"rollout minRequests", func(f *functions.Function) { f.Spec.Rollout.MinRequests = -1 }, "spec.rollout.minRequests"},
		{"rollout maxErrorRate", func(f *functions.Function) { f.Spec.Rollout.MaxErrorRate = 1 }, "spec.rollout.maxErrorRate: must be above 0 and below 0.5, got 1"},
		{"rollout maxLatencyP99", func(f *functions.Function) { f.Spec.Rollout.MaxLatencyP99.Duration = time.Microsecond }, "spec.rollout.maxLatencyP99"},
		{"rollout minAccuracy", func(f *functions.Function) { f.Spec.Rollout.MinAccuracy = 1.5 }, "spec.rollout.minAccuracy"},
		{"rollout maxDisagreement", func(f *functions.Function) { f.Spec.Rollout.Shadow, f.Spec.Rollout.MaxDisagreement = true, 0.7 }, "spec.rollout.maxDisagreement"},
		{"retrain data", func(f *functions.Function) { f.Spec.Retrain.Data = functions.ModelSpec{} }, "spec.retrain.data: set path"},
		{"retrain newRows", func(f *functions.Function) { f.Spec.Retrain.NewRows = -1 }, "spec.retrain.newRows"},
		{"retrain drift psi", func(f *functions.Function) { f.Spec.Retrain.Drift.PSI = -1 }, "spec.retrain.drift.psi"},
		{"retrain drift minSamples", func(f *functions.Function) { f.Spec.Retrain.Drift.MinSamples = 1 }, "spec.retrain.drift.minSamples: must be between 10 and 1000000, got 1"},
		{"retrain drift windows", func(f *functions.Function) { f.Spec.Retrain.Drift.Windows = 0 }, "spec.retrain.drift.windows"},
		{"retrain minAccuracy", func(f *functions.Function) { f.Spec.Retrain.MinAccuracy = 1 }, "spec.retrain.minAccuracy"},
		{"retrain deadline", func(f *functions.Function) { f.Spec.Retrain.Deadline.Duration = time.Millisecond }, "spec.retrain.deadline"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fn, err := functions.Parse([]byte(irisYAML))
			require.NoError(t, err)
			tc.change(fn)
			require.ErrorContains(t, fn.Validate(), tc.want)
		})
	}
}

func TestValidateReportsAllErrorsAtOnce(t *testing.T) {
	fn, err := functions.Parse([]byte(irisYAML))
	require.NoError(t, err)
	fn.Spec.Runtime.Device = "tpu"
	fn.Spec.Batching.MaxBatchSize = -1
	err = fn.Validate()
	require.ErrorContains(t, err, "spec.runtime.device")
	require.ErrorContains(t, err, "spec.batching.maxBatchSize")
}
