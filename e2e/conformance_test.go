//go:build conformance

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"sluice.dev/sluice/activator/inference"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/worker/onnx"
)

// The model-conformance suite (`make conformance`) deploys every ONNX backend
// test model Debian ships (libonnx-testdata) through `sluice deploy` on a
// running `sluice up`, runs its test_data_set_0 through OIP REST in JSON and
// in the binary tensor data extension and through OIP gRPC with raw
// contents, and compares every output with the
// expected one: rtol 1e-3 and atol 1e-4 for floating point, exact for the
// rest. Every model must end in one of the verdicts below; a 5xx, a hang, a
// crash loop or a wrong answer fails the suite.
const (
	// verdictPass: every path gave the expected outputs.
	verdictPass = "PASS"
	// verdictRefused: sluice deploy refused the model with a reason that
	// names what cannot be served (a sequence, map or optional type, an
	// element type without an OIP datatype, or ONNX Runtime's load error).
	verdictRefused = "REFUSED"
	// verdictAsRuntime: the answers are not the expected ones, but they are
	// exactly what ONNX Runtime gives in-process for the same inputs: the
	// platform carried them faithfully, and ONNX Runtime differs from the
	// reference (for example Resize with align_corners).
	verdictAsRuntime = "PASS-AS-ONNX-RUNTIME"
	// verdictRandom: the model's outputs differ between in-process runs
	// (Bernoulli, Dropout in training mode, whose seed counts runs); only
	// names, datatypes and shapes are compared.
	verdictRandom = "PASS-NONDETERMINISTIC"
	verdictFail   = "FAIL"
)

// conformanceData is where Debian's libonnx-testdata puts the models.
func conformanceData(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SLUICE_ONNX_TESTDATA")
	if dir == "" {
		dir = "/usr/share/libonnx-testdata/data"
	}
	_, err := os.Stat(dir)
	require.NoError(t, err, "the ONNX backend test models are missing: `make conformance` installs Debian's libonnx-testdata")
	return dir
}

// conformancePlatform is the platform the suite runs on, with a gRPC client.
type conformancePlatform struct {
	*platform
	grpc inference.GRPCInferenceServiceClient
}

// conformanceCase is one test model and what became of it.
type conformanceCase struct {
	dir      string // the model's folder, relative to the data
	function string
	verdict  string
	detail   string
}

func TestModelConformance(t *testing.T) {
	data := conformanceData(t)
	require.NoError(t, onnx.Init(""), "ONNX Runtime is required: run `make deps`")
	models, err := filepath.Glob(filepath.Join(data, "*", "*", "model.onnx"))
	require.NoError(t, err)
	require.NotEmpty(t, models)
	if pattern := os.Getenv("SLUICE_CONFORMANCE_MATCH"); pattern != "" {
		models = slices.DeleteFunc(models, func(path string) bool { return !strings.Contains(path, pattern) })
	}
	p := startPlatform(t)
	work := t.TempDir()
	t.Setenv("SLUICE_NATS_URL", natsURL(t, p))
	conn, err := grpc.NewClient(grpcAddr(t, p), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	require.NoError(t, err)
	defer conn.Close()
	suite := &conformancePlatform{platform: p, grpc: inference.NewGRPCInferenceServiceClient(conn)}

	cases := make([]*conformanceCase, len(models))
	next := make(chan int)
	var group sync.WaitGroup
	for range 3 {
		group.Go(func() {
			for i := range next {
				dir, _ := filepath.Rel(data, filepath.Dir(models[i]))
				c := &conformanceCase{dir: dir, function: fmt.Sprintf("conformance-%04d", i)}
				c.verdict, c.detail = suite.conform(t, filepath.Dir(models[i]), c.function, work)
				cases[i] = c
			}
		})
	}
	for i := range models {
		next <- i
	}
	close(next)
	group.Wait()

	counts := map[string]int{}
	var report strings.Builder
	for _, c := range cases {
		counts[c.verdict]++
		fmt.Fprintf(&report, "%s\t%s\t%s\n", c.verdict, c.dir, strings.ReplaceAll(c.detail, "\n", " "))
	}
	if path := os.Getenv("SLUICE_CONFORMANCE_REPORT"); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(report.String()), 0o644))
	}
	verdicts := slices.Sorted(maps.Keys(counts))
	summary := make([]string, len(verdicts))
	for i, verdict := range verdicts {
		summary[i] = fmt.Sprintf("%s %d", verdict, counts[verdict])
	}
	t.Logf("%d models: %s", len(cases), strings.Join(summary, ", "))
	for _, c := range cases {
		if c.verdict == verdictFail {
			t.Errorf("%s: %s", c.dir, c.detail)
		}
	}
}

// conform deploys the model in dir as function, runs its first test data
// set and returns the verdict, with the reason or the difference.
func (p *conformancePlatform) conform(t *testing.T, dir, function, work string) (verdict, detail string) {
	spec := filepath.Join(work, function+".yaml")
	require.NoError(t, os.WriteFile(spec, fmt.Appendf(nil, `apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {name: %s}
spec:
  model: {path: %s}
  scaling: {minReplicas: 0, maxReplicas: 1, scaleToZeroAfter: 1s}
  timeouts: {request: 30s}
`, function, filepath.Join(dir, "model.onnx")), 0o644))
	out, err := exec.Command(binary, "deploy", "-f", spec).CombinedOutput()
	if err != nil {
		reason := strings.TrimSpace(string(out))
		if !strings.Contains(reason, "unsupported") && !strings.Contains(reason, "cannot run") {
			return verdictFail, "deploy failed without a clear reason: " + reason
		}
		p.deleteFunction(t, function)
		return verdictRefused, reason[strings.LastIndex(reason, "\n")+1:]
	}
	defer p.deleteFunction(t, function)

	signature, err := p.signature(function)
	if err != nil {
		return verdictFail, err.Error()
	}
	inputs, err := readTestTensors(dir, "input", signature.Inputs)
	if err != nil {
		return verdictFail, err.Error()
	}
	want, err := readTestTensors(dir, "output", signature.Outputs)
	if err != nil {
		return verdictFail, err.Error()
	}
	var answers [][]oip.Tensor
	var notes []string
	for _, binary := range []bool{false, true} {
		got, err := p.inferTensors(function, inputs, binary)
		if errors.Is(err, errTooLargeAsJSON) {
			notes = append(notes, "JSON: "+err.Error())
			continue
		}
		if err != nil {
			return verdictFail, fmt.Sprintf("binary=%t: %v", binary, err)
		}
		answers = append(answers, got)
	}
	got, err := p.inferGRPC(function, inputs)
	if err != nil {
		return verdictFail, fmt.Sprintf("gRPC: %v", err)
	}
	answers = append(answers, got)
	var mismatch string
	for _, got := range answers {
		if mismatch = compareTensors(want, got, false); mismatch != "" {
			break
		}
	}
	if mismatch == "" {
		return verdictPass, strings.Join(notes, "; ")
	}
	return runtimeVerdict(dir, signature, inputs, answers, mismatch)
}

// runtimeVerdict decides about answers that differ from the reference by
// running the model in-process with ONNX Runtime, twice.
func runtimeVerdict(dir string, signature oip.Signature, inputs []oip.Tensor, answers [][]oip.Tensor, mismatch string) (string, string) {
	model, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return verdictFail, err.Error()
	}
	session, err := onnx.Load(model, signature, onnx.DefaultSessionConfig())
	if err != nil {
		return verdictFail, fmt.Sprintf("%s; in-process: %v", mismatch, err)
	}
	defer session.Close()
	// As many runs as the platform's worker made: a model whose outputs
	// depend on how often its session ran (a seeded Dropout in training
	// mode) shows it.
	var first []oip.Tensor
	random := false
	for range max(len(answers), 2) {
		run, err := session.Run(inputs)
		if err != nil {
			return verdictFail, fmt.Sprintf("%s; in-process: %v", mismatch, err)
		}
		if first == nil {
			first = run
		}
		random = random || compareTensors(first, run, false) != ""
	}
	for _, got := range answers {
		if difference := compareTensors(first, got, random); difference != "" {
			return verdictFail, fmt.Sprintf("%s; and against ONNX Runtime in-process: %s", mismatch, difference)
		}
	}
	if random {
		return verdictRandom, mismatch
	}
	return verdictAsRuntime, "reference: " + mismatch
}

// deleteFunction removes a function and its queue once its case is done.
func (p *platform) deleteFunction(t *testing.T, function string) {
	out, err := exec.Command(binary, "functions", "delete", "--yes", function).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "not found") {
		t.Errorf("delete %s: %v: %s", function, err, out)
	}
}

// signature reads a function's model metadata.
func (p *platform) signature(function string) (oip.Signature, error) {
	resp, err := http.Get(p.url + "/v2/models/" + function)
	if err != nil {
		return oip.Signature{}, err
	}
	defer resp.Body.Close()
	var signature oip.Signature
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return signature, fmt.Errorf("model metadata: %d %s", resp.StatusCode, body)
	}
	return signature, json.NewDecoder(resp.Body).Decode(&signature)
}

// readTestTensors reads test_data_set_0/<role>_<i>.pb for each spec, named as the spec.
func readTestTensors(dir, role string, specs []oip.TensorSpec) ([]oip.Tensor, error) {
	tensors := make([]oip.Tensor, len(specs))
	for i, spec := range specs {
		message, err := os.ReadFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("%s_%d.pb", role, i)))
		if err != nil {
			return nil, err
		}
		if tensors[i], err = onnxfile.ReadTensor(message); err != nil {
			return nil, fmt.Errorf("%s_%d.pb: %w", role, i, err)
		}
		tensors[i].Name = spec.Name
	}
	return tensors, nil
}

// errTooLargeAsJSON: the request is over the body limit written as JSON
// (413); binary tensors carry it.
var errTooLargeAsJSON = errors.New("over the body limit as JSON")

// inferTensors posts inputs to the function as JSON, or all in binary asking
// for binary outputs, and returns the outputs.
func (p *platform) inferTensors(function string, inputs []oip.Tensor, binary bool) ([]oip.Tensor, error) {
	request := &oip.InferenceRequest{Inputs: inputs}
	header := http.Header{"Content-Type": {"application/json"}}
	var body []byte
	var err error
	if binary {
		request.Parameters = map[string]any{"binary_data_output": true}
		var headerLength int
		body, headerLength, err = oip.AppendInferenceRequestBinary(nil, request, func(string) bool { return true })
		if headerLength > 0 { // else no input: the body is plain JSON
			header.Set("Content-Type", "application/octet-stream")
			header.Set(oip.HeaderInferenceHeaderContentLength, strconv.Itoa(headerLength))
		}
	} else {
		body, err = oip.AppendInferenceRequest(nil, request)
	}
	if err != nil {
		return nil, fmt.Errorf("encode the request: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, p.url+"/v2/models/"+function+"/infer", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = header
	client := http.Client{Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no answer: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusRequestEntityTooLarge && !binary {
		return nil, fmt.Errorf("%w: %s", errTooLargeAsJSON, bytes.TrimSpace(answer))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(answer))
	}
	var response *oip.InferenceResponse
	if length := resp.Header.Get(oip.HeaderInferenceHeaderContentLength); length != "" {
		headerLength, _ := strconv.ParseInt(length, 10, 64)
		response, err = oip.DecodeInferenceResponseBinary(answer, headerLength, oip.DefaultLimits())
	} else {
		response, err = oip.DecodeInferenceResponse(answer, oip.DefaultLimits())
	}
	if err != nil {
		return nil, fmt.Errorf("decode the answer: %w", err)
	}
	return response.Outputs, nil
}

// inferGRPC sends inputs to the function through OIP gRPC, each in
// raw_input_contents, and returns the outputs read from raw_output_contents.
func (p *conformancePlatform) inferGRPC(function string, inputs []oip.Tensor) ([]oip.Tensor, error) {
	req := &inference.ModelInferRequest{ModelName: function}
	for _, input := range inputs {
		// The binary extension's bytes of one tensor are its raw contents.
		body, headerLength, err := oip.AppendInferenceRequestBinary(nil, &oip.InferenceRequest{Inputs: []oip.Tensor{input}}, func(string) bool { return true })
		if err != nil {
			return nil, err
		}
		req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{Name: input.Name, Datatype: string(input.Datatype), Shape: input.Shape})
		req.RawInputContents = append(req.RawInputContents, body[headerLength:])
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := p.grpc.ModelInfer(ctx, req)
	if err != nil {
		return nil, err
	}
	// Read the raw contents back as a binary answer would carry them.
	type head struct {
		Name       string         `json:"name"`
		Shape      []int64        `json:"shape"`
		Datatype   string         `json:"datatype"`
		Parameters map[string]int `json:"parameters"`
	}
	answer := struct {
		ModelName string `json:"model_name"`
		Outputs   []head `json:"outputs"`
	}{ModelName: resp.GetModelName()}
	var tail []byte
	for i, output := range resp.GetOutputs() {
		answer.Outputs = append(answer.Outputs, head{Name: output.GetName(), Shape: nonNilShape(output.GetShape()), Datatype: output.GetDatatype(),
			Parameters: map[string]int{"binary_data_size": len(resp.GetRawOutputContents()[i])}})
		tail = append(tail, resp.GetRawOutputContents()[i]...)
	}
	header, err := json.Marshal(answer)
	if err != nil {
		return nil, err
	}
	decoded, err := oip.DecodeInferenceResponseBinary(append(header, tail...), int64(len(header)), oip.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("decode the answer: %w", err)
	}
	return decoded.Outputs, nil
}

func nonNilShape(shape []int64) []int64 {
	if shape == nil {
		return []int64{}
	}
	return shape
}

// floats returns floating-point data as float64, or nil for other data.
func floats(data any) []float64 {
	switch data := data.(type) {
	case []float32:
		out := make([]float64, len(data))
		for i, v := range data {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return data
	case []float16.Float16:
		out := make([]float64, len(data))
		for i, v := range data {
			out[i] = float64(v.Float32())
		}
		return out
	}
	return nil
}

// compareTensors reports the first difference between want and got, by
// position: name, datatype, shape and, unless shapesOnly, the elements.
func compareTensors(want, got []oip.Tensor, shapesOnly bool) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d outputs, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		switch {
		case w.Name != g.Name:
			return fmt.Sprintf("output %d is %q, want %q", i, g.Name, w.Name)
		case w.Datatype != g.Datatype:
			return fmt.Sprintf("%s: datatype %s, want %s", w.Name, g.Datatype, w.Datatype)
		case !slices.Equal(w.Shape, g.Shape):
			return fmt.Sprintf("%s: shape %v, want %v", w.Name, g.Shape, w.Shape)
		case shapesOnly:
			continue
		}
		if wf := floats(w.Data); wf != nil {
			gf := floats(g.Data)
			for k := range wf {
				if !within(wf[k], gf[k]) {
					return fmt.Sprintf("%s[%d] is %v, want %v", w.Name, k, gf[k], wf[k])
				}
			}
			continue
		}
		if !reflect.DeepEqual(w.Data, g.Data) {
			return fmt.Sprintf("%s: %v, want %v", w.Name, clip(g.Data), clip(w.Data))
		}
	}
	return ""
}

// within is the suite's tolerance: rtol 1e-3, atol 1e-4; NaN equals NaN and
// infinities equal themselves.
func within(want, got float64) bool {
	switch {
	case math.IsNaN(want) || math.IsNaN(got):
		return math.IsNaN(want) && math.IsNaN(got)
	case math.IsInf(want, 0) || math.IsInf(got, 0):
		return want == got
	}
	return math.Abs(want-got) <= 1e-4+1e-3*math.Abs(want)
}

// clip shows at most 80 characters of data.
func clip(data any) string {
	shown := fmt.Sprint(data)
	if len(shown) > 80 {
		return shown[:80] + "…"
	}
	return shown
}
