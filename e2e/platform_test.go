package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
)

// platform is a running `sluice up` with the iris demo deployed.
type platform struct {
	url    string
	data   string // its --data-dir
	key    string // the API key post sends, if any
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan error
}

// syncBuffer collects a process's output for the failure message.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sluice runs a client subcommand and returns its standard output.
func sluice(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	require.NoError(t, err, "sluice %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// activatorListening precedes the activator's address in the log of `sluice up`.
const activatorListening = `msg="activator listening" addr=`

// startPlatform trains the demo model, writes its Function and runs `sluice up`.
func startPlatform(t testing.TB, extraArgs ...string) *platform {
	t.Helper()
	spec, err := os.ReadFile("../deploy/demo/iris.yaml")
	require.NoError(t, err)
	return startPlatformWith(t, spec, extraArgs...)
}

// startPlatformWith runs `sluice up` with the demo model and data deployed
// by the Function in spec.
func startPlatformWith(t testing.TB, spec []byte, extraArgs ...string) *platform {
	t.Helper()
	return startPlatformAs(t, "", spec, extraArgs...)
}

// startPlatformAs is startPlatformWith for a platform with API keys: the
// test calls it with key.
func startPlatformAs(t testing.TB, key string, spec []byte, extraArgs ...string) *platform {
	t.Helper()
	dir := t.TempDir()
	out := sluice(t, "train", "--input", "../deploy/demo/iris.csv", "--output", filepath.Join(dir, "iris.onnx"))
	require.Contains(t, out, "held-out accuracy")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "iris.yaml"), spec, 0o644))
	data, err := os.ReadFile("../deploy/demo/iris.csv")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "iris.csv"), data, 0o644))

	p := &platform{data: filepath.Join(dir, "data"), key: key, logs: &syncBuffer{}, exited: make(chan error, 1)}
	// The CLI the test runs logs in to NATS as the operator, with the
	// credentials `sluice up` writes.
	t.Setenv("SLUICE_NATS_CREDS", filepath.Join(p.data, "nats", "admin.creds"))
	// Every port is chosen by `sluice up` as it listens, and read from its
	// log: a port the test chose and let go could be taken meanwhile, by
	// the embedded NATS server among others.
	args := []string{"up", "--data-dir", p.data, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--nats-port", "-1", "--deploy", filepath.Join(dir, "iris.yaml")}
	p.cmd = exec.Command(binary, append(args, extraArgs...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.WaitDelay = 10 * time.Second // workers hold the output pipe a little after up exits
	require.NoError(t, p.cmd.Start())
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("sluice up output:\n%s", p.logs.String())
		}
	})
	require.Eventually(t, func() bool {
		return strings.Contains(p.logs.String(), activatorListening)
	}, 30*time.Second, 20*time.Millisecond, "sluice up never listened. Output:\n%s", p.logs.String())
	p.url = "http://" + p.logged(t, activatorListening)
	require.Eventually(t, func() bool {
		code, _ := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
		return code == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "the iris function never answered; make deps installs ONNX Runtime. Output:\n%s", p.logs.String())
	return p
}

const irisRequest = `{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}`

// authorize sends the platform's API key with req, if it has one.
func (p *platform) authorize(req *http.Request) {
	if p.key != "" {
		req.Header.Set("Authorization", "Bearer "+p.key)
	}
}

func (p *platform) post(t testing.TB, path, body string, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	p.authorize(req)
	for key, values := range header {
		req.Header[key] = values
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}

// oipResponse is the part of an Open Inference Protocol answer the tests read.
type oipResponse struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	Outputs      []struct {
		Name     string          `json:"name"`
		Shape    []int64         `json:"shape"`
		Datatype string          `json:"datatype"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// requireIrisAnswer checks the answer for irisRequest: probabilities of two
// rows that each sum to 1, and the labels setosa (0) and virginica (2).
func requireIrisAnswer(t *testing.T, body []byte) {
	t.Helper()
	var answer oipResponse
	require.NoError(t, json.Unmarshal(body, &answer), "%s", body)
	require.Equal(t, "iris", answer.ModelName)
	require.Equal(t, "1", answer.ModelVersion)
	outputs := map[string]json.RawMessage{}
	for _, output := range answer.Outputs {
		outputs[output.Name] = output.Data
	}
	var probabilities []float64
	require.NoError(t, json.Unmarshal(outputs["probabilities"], &probabilities))
	require.Len(t, probabilities, 6)
	for row := range 2 {
		sum := probabilities[3*row] + probabilities[3*row+1] + probabilities[3*row+2]
		require.InDelta(t, 1, sum, 1e-5, "row %d", row)
	}
	var labels []int64
	require.NoError(t, json.Unmarshal(outputs["label"], &labels))
	require.Equal(t, []int64{0, 2}, labels)
}

func TestQuickStart(t *testing.T) {
	p := startPlatform(t)

	t.Run("curl", func(t *testing.T) {
		code, body := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
		require.Equal(t, http.StatusOK, code, "%s", body)
		requireIrisAnswer(t, body)
	})
	t.Run("sluice predict", func(t *testing.T) {
		out := sluice(t, "predict", "iris", "--url", p.url, "-o", "json", "--data", "[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]")
		requireIrisAnswer(t, []byte(out))
	})
	t.Run("binary-mode CloudEvent", func(t *testing.T) {
		body := `{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]}]}`
		req, err := http.NewRequest(http.MethodPost, p.url+"/", strings.NewReader(body))
		require.NoError(t, err)
		req.Header = http.Header{
			"Ce-Specversion": {"1.0"}, "Ce-Id": {"e2e-1"}, "Ce-Source": {"/e2e"},
			"Ce-Type": {"dev.sluice.inference.request"}, "Ce-Model": {"iris"}, "Content-Type": {"application/json"},
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		answer, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", answer)
		require.Equal(t, "dev.sluice.inference.response", resp.Header.Get("Ce-Type"))
		require.Equal(t, "e2e-1", resp.Header.Get("Ce-Requestid"))
		requireIrisAnswer(t, answer)
	})
	t.Run("functions list", func(t *testing.T) {
		out := sluice(t, "functions", "list", "--nats-url", natsURL(t, p))
		require.Contains(t, out, "iris")
	})
	t.Run("bad input is a 400 naming the field", func(t *testing.T) {
		code, body := p.post(t, "/v2/models/iris/infer", `{"inputs":[{"name":"input","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`, nil)
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, string(body), "inputs[0].shape")
	})
}

// natsURL reads the embedded server's URL from the platform's log.
func natsURL(t testing.TB, p *platform) string {
	t.Helper()
	return p.logged(t, `msg="nats listening" url=`)
}

// logged returns the word after marker in the platform's log.
func (p *platform) logged(t testing.TB, marker string) string {
	t.Helper()
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if _, after, ok := strings.Cut(line, marker); ok {
			return strings.Fields(after)[0]
		}
	}
	t.Fatalf("no %s in the log:\n%s", marker, p.logs.String())
	return ""
}

// SIGTERM drains: every request the activator accepted before the signal is
// answered, and the process exits cleanly.
func TestSIGTERMAnswersRequestsInFlight(t *testing.T) {
	p := startPlatform(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, _ := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // let load build up before the signal
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.exited:
		require.NoError(t, err, "sluice up exits cleanly on SIGTERM")
		p.exited <- nil // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatal("sluice up did not exit within 60s of SIGTERM")
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Greater(t, codes[http.StatusOK], 0)
	for code, n := range codes {
		// 0: the connection was refused once the listener closed; never a 5xx.
		require.Contains(t, []int{0, http.StatusOK}, code, "%d requests got %d; all: %v", n, code, codes)
	}
}

// An asynchronous call is answered 202 at once with where to fetch its
// result; the result is the body a synchronous call would have given. A retry
// with the same Idempotency-Key is accepted again but scored once.
func TestAsyncPrediction(t *testing.T) {
	p := startPlatform(t)
	header := http.Header{"Prefer": {"respond-async"}, "Idempotency-Key": {"order-7"}}
	code, body := p.post(t, "/v2/models/iris/infer", irisRequest, header)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var accepted struct{ ID, Status, Location string }
	require.NoError(t, json.Unmarshal(body, &accepted))
	require.Equal(t, "order-7", accepted.ID)
	require.Equal(t, "/v1/requests/order-7", accepted.Location)

	requireIrisAnswer(t, p.awaitResult(t, accepted.Location))

	code, again := p.post(t, "/v2/models/iris/infer", irisRequest, header)
	require.Equal(t, http.StatusAccepted, code)
	require.JSONEq(t, string(body), string(again), "the retry points at the same request")

	structured := `{"specversion":"1.0","id":"shop-1","source":"/shop","type":"dev.sluice.inference.request","model":"iris",` +
		`"datacontenttype":"application/json","data":` + irisRequest + `}`
	code, body = p.post(t, "/", structured, http.Header{"Prefer": {"respond-async"}, "Content-Type": {"application/cloudevents+json"}})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var answer struct {
		Type string
		Data json.RawMessage
	}
	require.NoError(t, json.Unmarshal(body, &answer), "a structured CloudEvent is answered with one")
	require.Equal(t, events.TypeInferenceAccepted, answer.Type)
	require.NoError(t, json.Unmarshal(answer.Data, &accepted))
	require.Equal(t, "/v1/requests/shop-1?source=%2Fshop", accepted.Location, "a CloudEvent is known by its source and id")
	requireIrisAnswer(t, p.awaitResult(t, accepted.Location))

	resp, err := http.Get(p.url + "/v1/requests/never-sent")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// A request in the binary tensor data extension, as a CloudEvent or over OIP
// REST, goes to the worker as it is, and its answer comes back in binary:
// synchronously, and asynchronously from GET /v1/requests/{id}.
func TestBinaryCloudEvent(t *testing.T) {
	p := startPlatform(t)
	req, err := oip.DecodeInferenceRequest([]byte(irisRequest), oip.DefaultLimits())
	require.NoError(t, err)
	req.Parameters = map[string]any{"binary_data_output": true}
	body, headerLength, err := oip.AppendInferenceRequestBinary(nil, req, func(string) bool { return true })
	require.NoError(t, err)
	header := func(id string) http.Header {
		return http.Header{
			"Ce-Specversion": {"1.0"}, "Ce-Id": {id}, "Ce-Source": {"/test"}, "Ce-Type": {events.TypeInferenceRequest},
			"Ce-Model": {"iris"}, "Ce-Oipheaderlength": {strconv.Itoa(headerLength)}, "Content-Type": {events.ContentTypeBinary},
		}
	}
	requireBinaryIrisAnswer := func(t *testing.T, body []byte, headerLength string) {
		t.Helper()
		length, err := strconv.ParseInt(headerLength, 10, 64)
		require.NoError(t, err, "the answer's header length")
		resp, err := oip.DecodeInferenceResponseBinary(body, length, oip.DefaultLimits())
		require.NoError(t, err)
		plain, err := oip.AppendInferenceResponse(nil, resp)
		require.NoError(t, err)
		requireIrisAnswer(t, plain)
	}

	// requireBinary checks a 200 answer in binary, its JSON header length in header lengthHeader.
	requireBinary := func(t *testing.T, code int, answer []byte, answerHeader http.Header, lengthHeader string) {
		t.Helper()
		require.Equal(t, http.StatusOK, code, "%s", answer)
		require.Equal(t, events.ContentTypeBinary, answerHeader.Get("Content-Type"))
		requireBinaryIrisAnswer(t, answer, answerHeader.Get(lengthHeader))
	}
	requireBinaryResult := func(t *testing.T, location string) {
		t.Helper()
		result, resultHeader := p.awaitResponse(t, location)
		requireBinary(t, http.StatusOK, result, resultHeader, oip.HeaderInferenceHeaderContentLength)
	}

	code, answer, answerHeader := p.postBinary(t, "/", body, header("bin-1"))
	requireBinary(t, code, answer, answerHeader, "Ce-Oipheaderlength")

	async := header("bin-2")
	async.Set("Prefer", "respond-async")
	code, answer, _ = p.postBinary(t, "/", body, async)
	require.Equal(t, http.StatusAccepted, code, "%s", answer)
	requireBinaryResult(t, "/v1/requests/bin-2?source=%2Ftest")

	// The same request over OIP REST, as Triton's HTTP client sends it.
	triton := http.Header{oip.HeaderInferenceHeaderContentLength: {strconv.Itoa(headerLength)}, "Content-Type": {events.ContentTypeBinary}}
	code, answer, answerHeader = p.postBinary(t, "/v2/models/iris/infer", body, triton)
	requireBinary(t, code, answer, answerHeader, oip.HeaderInferenceHeaderContentLength)

	triton.Set("Prefer", "respond-async")
	triton.Set("Idempotency-Key", "bin-3")
	code, answer, _ = p.postBinary(t, "/v2/models/iris/infer", body, triton)
	require.Equal(t, http.StatusAccepted, code, "%s", answer)
	requireBinaryResult(t, "/v1/requests/bin-3")

	// A JSON request asking for binary outputs gets them too, the same
	// synchronously and from GET.
	jsonAsking := `{"parameters":{"binary_data_output":true},` + irisRequest[1:]
	code, answer, answerHeader = p.postBinary(t, "/v2/models/iris/infer", []byte(jsonAsking), http.Header{"Content-Type": {"application/json"}})
	requireBinary(t, code, answer, answerHeader, oip.HeaderInferenceHeaderContentLength)
	code, answer = p.post(t, "/v2/models/iris/infer", jsonAsking, http.Header{"Prefer": {"respond-async"}, "Idempotency-Key": {"bin-4"}})
	require.Equal(t, http.StatusAccepted, code, "%s", answer)
	requireBinaryResult(t, "/v1/requests/bin-4")
}

// postBinary posts body with header and returns the status, body and header of the answer.
func (p *platform) postBinary(t *testing.T, path string, body []byte, header http.Header) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data, resp.Header
}

// awaitResult polls the location of an asynchronous request until it answers 200, and returns the body.
func (p *platform) awaitResult(t *testing.T, location string) []byte {
	t.Helper()
	result, _ := p.awaitResponse(t, location)
	return result
}

// awaitResponse polls the location of an asynchronous request until it
// answers 200, and returns the body and the header of that answer.
func (p *platform) awaitResponse(t *testing.T, location string) ([]byte, http.Header) {
	t.Helper()
	var result []byte
	var header http.Header
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodGet, p.url+location, nil)
		require.NoError(t, err)
		p.authorize(req)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		result, err = io.ReadAll(resp.Body)
		require.NoError(t, err)
		header = resp.Header
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "no result at %s", location)
	return result, header
}

// Prometheus finds every process of `sluice up` through one URL: GET
// /metrics/targets lists the activator and each ready worker (HTTP service
// discovery), and each address serves its /metrics.
func TestUpListsItsMetricsTargets(t *testing.T) {
	p := startPlatform(t)
	resp, err := http.Get(p.url + "/metrics/targets")
	require.NoError(t, err)
	defer resp.Body.Close()
	var groups []struct {
		Targets []string
		Labels  map[string]string
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&groups))
	var worker string
	for _, group := range groups {
		require.Len(t, group.Targets, 1)
		if group.Labels["component"] == "worker" && group.Labels["function"] == "iris" && group.Labels["revision"] == "1" {
			worker = group.Targets[0]
		}
	}
	require.NotEmpty(t, worker, "the worker that answered startPlatform's prediction is listed: %+v", groups)
	metrics, err := http.Get("http://" + worker + "/metrics")
	require.NoError(t, err)
	defer metrics.Body.Close()
	body, err := io.ReadAll(metrics.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), `sluice_worker_requests_total{function="iris",outcome="ok",revision="1"}`)
}
