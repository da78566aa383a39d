package onnx_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/functions/train"
	"sluice.dev/sluice/worker/onnx"
)

// initRuntime loads ONNX Runtime, or fails the test saying how to install it.
func initRuntime(t testing.TB) {
	t.Helper()
	require.NoError(t, onnx.Init(""), "the ONNX Runtime shared library is required: run `make deps`")
}

// iris is the classifier trained from deploy/demo/iris.csv, its ONNX file
// and the 150 rows it was trained on, once per test binary.
type iris struct {
	classifier *train.Classifier
	model      []byte
	signature  oip.Signature
	rows       [][]float32
}

var loadIris = sync.OnceValues(func() (*iris, error) {
	classifier, data, _, err := train.FitFile(context.Background(), "../../deploy/demo/iris.csv", "", train.DefaultConfig())
	if err != nil {
		return nil, err
	}
	model, err := classifier.ONNX()
	if err != nil {
		return nil, err
	}
	signature, err := onnxfile.ReadSignature(model)
	if err != nil {
		return nil, err
	}
	return &iris{classifier: classifier, model: model, signature: signature, rows: data.Float32Rows()}, nil
})

// irisFixture returns the trained iris classifier and its data.
func irisFixture(t testing.TB) *iris {
	t.Helper()
	fixture, err := loadIris()
	require.NoError(t, err, "train the iris model")
	return fixture
}

// loadSession creates a session with the default configuration, closed when the test ends.
func loadSession(t testing.TB, model []byte, signature oip.Signature) *onnx.Session {
	t.Helper()
	initRuntime(t)
	session, err := onnx.Load(model, signature, onnx.DefaultSessionConfig())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, session.Close()) })
	return session
}

// irisInput stacks rows into the model's input tensor.
func irisInput(t testing.TB, rows [][]float32) oip.Tensor {
	t.Helper()
	data := slices.Concat(rows...)
	tensor, err := oip.NewTensor(train.InputName, []int64{int64(len(rows)), int64(len(rows[0]))}, data)
	require.NoError(t, err)
	return tensor
}

func output(t testing.TB, outputs []oip.Tensor, name string) oip.Tensor {
	t.Helper()
	index := slices.IndexFunc(outputs, func(tensor oip.Tensor) bool { return tensor.Name == name })
	require.GreaterOrEqual(t, index, 0, "output %q missing from %v", name, outputs)
	return outputs[index]
}

func argmax(values []float32) int64 {
	best := 0
	for i, value := range values {
		if value > values[best] {
			best = i
		}
	}
	return int64(best)
}

func TestIrisMatchesPredictProba(t *testing.T) {
	fixture := irisFixture(t)
	session := loadSession(t, fixture.model, fixture.signature)
	require.Equal(t, fixture.signature, session.Signature())

	outputs, err := session.Run([]oip.Tensor{irisInput(t, fixture.rows)})
	require.NoError(t, err)
	require.Len(t, outputs, len(fixture.signature.Outputs))
	for i, spec := range fixture.signature.Outputs {
		require.Equal(t, spec.Name, outputs[i].Name, "outputs come in signature order")
		require.Equal(t, spec.Datatype, outputs[i].Datatype, "output %q", spec.Name)
	}

	classes := int64(len(fixture.classifier.Classes()))
	probabilities := output(t, outputs, train.ProbabilitiesName)
	require.Equal(t, oip.FP32, probabilities.Datatype)
	require.Equal(t, []int64{150, classes}, probabilities.Shape)
	labels := output(t, outputs, train.LabelName)
	require.Equal(t, oip.Int64, labels.Datatype)
	require.Equal(t, []int64{150}, labels.Shape)

	// The class output, when the model has one, names the label.
	var names []string
	if slices.ContainsFunc(outputs, func(tensor oip.Tensor) bool { return tensor.Name == train.ClassName }) {
		names = output(t, outputs, train.ClassName).Data.([]string)
	}
	got := probabilities.Data.([]float32)
	for row, features := range fixture.rows {
		want := fixture.classifier.PredictProba(features)
		require.InDeltaSlice(t, want, got[int64(row)*classes:int64(row+1)*classes], 1e-5, "row %d", row)
		label := labels.Data.([]int64)[row]
		require.Equal(t, argmax(want), label, "label of row %d", row)
		if names != nil {
			require.Equal(t, fixture.classifier.Classes()[label], names[row], "class of row %d", row)
		}
	}
}

func TestRunErrors(t *testing.T) {
	fixture := irisFixture(t)
	session := loadSession(t, fixture.model, fixture.signature)
	tests := []struct {
		name   string
		inputs []oip.Tensor
		want   []string
	}{
		{
			name:   "missing input",
			inputs: []oip.Tensor{{Name: "features", Shape: []int64{1, 4}, Datatype: oip.FP32, Data: []float32{1, 2, 3, 4}}},
			want:   []string{`input "input" missing`},
		},
		{
			name:   "no inputs",
			inputs: nil,
			want:   []string{`input "input" missing`},
		},
		{
			name:   "bad shape",
			inputs: []oip.Tensor{{Name: "input", Shape: []int64{1, 5}, Datatype: oip.FP32, Data: []float32{1, 2, 3, 4, 5}}},
			want:   []string{"onnx: run:", "input"},
		},
		{
			name:   "bad rank",
			inputs: []oip.Tensor{{Name: "input", Shape: []int64{4}, Datatype: oip.FP32, Data: []float32{1, 2, 3, 4}}},
			want:   []string{"onnx: run:"},
		},
		{
			name:   "wrong datatype",
			inputs: []oip.Tensor{{Name: "input", Shape: []int64{1, 4}, Datatype: oip.FP64, Data: []float64{1, 2, 3, 4}}},
			want:   []string{"onnx: run:"},
		},
		{
			name:   "fewer elements than the shape holds",
			inputs: []oip.Tensor{{Name: "input", Shape: []int64{2, 4}, Datatype: oip.FP32, Data: []float32{1, 2, 3, 4}}},
			want:   []string{`onnx: input "input"`, "8 elements"},
		},
		{
			name:   "unsupported data",
			inputs: []oip.Tensor{{Name: "input", Shape: []int64{1, 4}, Datatype: oip.FP32, Data: []complex64{1, 2, 3, 4}}},
			want:   []string{`onnx: input "input"`, "not supported"},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			outputs, err := session.Run(test.inputs)
			require.Error(t, err)
			require.Nil(t, outputs)
			for _, want := range test.want {
				require.ErrorContains(t, err, want)
			}
		})
	}
	// A failed run leaves the session usable.
	outputs, err := session.Run([]oip.Tensor{irisInput(t, fixture.rows[:1])})
	require.NoError(t, err)
	require.Len(t, outputs, len(fixture.signature.Outputs))
}

func TestLoadErrors(t *testing.T) {
	fixture := irisFixture(t)
	initRuntime(t)
	tests := []struct {
		name      string
		model     []byte
		signature oip.Signature
		cfg       onnx.SessionConfig
		want      string
	}{
		{name: "not an onnx file", model: []byte("not a model"), signature: fixture.signature, cfg: onnx.DefaultSessionConfig(), want: "malformed model"},
		{name: "unknown device", model: fixture.model, signature: fixture.signature, cfg: onnx.SessionConfig{Device: "tpu", Threads: 1}, want: `device must be cpu or gpu, got "tpu"`},
		{name: "no threads", model: fixture.model, signature: fixture.signature, cfg: onnx.SessionConfig{Device: "cpu"}, want: "threads must be at least 1, got 0"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			session, err := onnx.Load(test.model, test.signature, test.cfg)
			require.ErrorContains(t, err, test.want)
			require.Nil(t, session)
		})
	}
}

// writeFile creates path, and its folders, with some bytes in it.
func writeFile(t *testing.T, path string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("not really a library"), 0o644))
	return path
}

func TestFindLibrary(t *testing.T) {
	root := t.TempDir()
	explicit := writeFile(t, filepath.Join(root, "explicit", "libonnxruntime.so"))
	fromEnv := writeFile(t, filepath.Join(root, "env", "libonnxruntime.so"))
	missing := filepath.Join(root, "missing", "libonnxruntime.so")
	cached := writeFile(t, filepath.Join(root, "repo", ".cache", "onnxruntime", onnx.Version, "libonnxruntime.so"))
	nested := filepath.Join(root, "repo", "worker", "onnx")
	require.NoError(t, os.MkdirAll(nested, 0o755))
	empty := filepath.Join(root, "empty")
	require.NoError(t, os.MkdirAll(empty, 0o755))

	tests := []struct {
		name     string
		explicit string
		env      string
		dir      string
		want     string
		wantErr  bool
	}{
		{name: "explicit path first", explicit: explicit, env: fromEnv, dir: nested, want: explicit},
		{name: "environment variable second", env: fromEnv, dir: nested, want: fromEnv},
		{name: "make deps cache in the working directory's parents third", dir: nested, want: cached},
		{name: "make deps cache in the working directory", dir: filepath.Join(root, "repo"), want: cached},
		{name: "missing explicit path does not fall back", explicit: missing, env: fromEnv, dir: nested, wantErr: true},
		{name: "missing environment path does not fall back", env: missing, dir: nested, wantErr: true},
		{name: "nothing anywhere", dir: empty, wantErr: true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Setenv(onnx.LibraryEnv, test.env)
			t.Chdir(test.dir)
			path, err := onnx.FindLibrary(test.explicit)
			if test.wantErr {
				require.ErrorIs(t, err, onnx.ErrNoLibrary)
				require.ErrorContains(t, err, "make deps")
				require.Empty(t, path)
				return
			}
			require.NoError(t, err)
			require.Equal(t, resolve(t, test.want), resolve(t, path))
		})
	}
}

// resolve follows symbolic links, so paths under a linked temporary folder compare equal.
func resolve(t *testing.T, path string) string {
	t.Helper()
	resolved, err := filepath.EvalSymlinks(path)
	require.NoError(t, err)
	return resolved
}

func TestInitLoadsTheLibraryOnce(t *testing.T) {
	initRuntime(t)
	// Later calls return the first call's result, whatever they ask for.
	require.NoError(t, onnx.Init(filepath.Join(t.TempDir(), "missing.so")))
	err := onnx.Init("")
	require.False(t, errors.Is(err, onnx.ErrNoLibrary))
}
