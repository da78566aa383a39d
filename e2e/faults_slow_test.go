//go:build faults

package e2e

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

// TestFaultsSlowModel runs a model whose runs take longer than the ack wait
// (a CNN of about a billion multiply-adds an image, 32 images a run) on
// `sluice up`: those long runs keep their requests, each answered once; and
// a function of the same model whose callers wait less than a run gets 504
// at its deadline, never an answer after it.
func TestFaultsSlowModel(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cnn.onnx"), cnnModel(t), 0o644))
	spec := func(name, timeout string) string {
		path := filepath.Join(dir, name+".yaml")
		require.NoError(t, os.WriteFile(path, []byte("apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: "+name+"}\nspec:\n  model: {path: ./cnn.onnx}\n"+
			"  scaling: {maxReplicas: 1, scaleToZeroAfter: 10m}\n  batching: {maxBatchSize: 32, maxDelay: 200ms}\n  timeouts: {request: "+timeout+"}\n"), 0o644))
		return path
	}
	p := startPlatform(t, "--deploy", spec("cnn", "60s"), "--deploy", spec("hasty", "800ms"))

	image := make([]float32, 3*320*320)
	for i := range image {
		image[i] = rand.Float32()
	}
	input, err := oip.NewTensor("image", []int64{1, 3, 320, 320}, image)
	require.NoError(t, err)
	body, headerLength, err := oip.AppendInferenceRequestBinary(nil, &oip.InferenceRequest{Inputs: []oip.Tensor{input},
		Parameters: map[string]any{"binary_data_output": true}}, func(string) bool { return true })
	require.NoError(t, err)
	header := http.Header{"Content-Type": {"application/octet-stream"}, oip.HeaderInferenceHeaderContentLength: {strconv.Itoa(headerLength)}}
	call := func(function string, n int) (codes []int, took []time.Duration) {
		codes, took = make([]int, n), make([]time.Duration, n)
		var calls sync.WaitGroup
		for i := range n {
			calls.Go(func() {
				start := time.Now()
				err := p.inferOn(function, body, header)
				took[i] = time.Since(start)
				var status *statusError
				switch {
				case err == nil:
					codes[i] = http.StatusOK
				case errors.As(err, &status):
					codes[i] = status.code
				}
			})
		}
		calls.Wait()
		return codes, took
	}
	_, one := call("cnn", 1) // wakes the worker
	_, one = call("cnn", 1)
	late := lateSince(t, p.url)

	const images = 32
	codes, took := call("cnn", images)
	run := slices.Max(took)
	for _, code := range codes {
		require.Equal(t, http.StatusOK, code)
	}
	require.Greater(t, run, 1500*time.Millisecond, "the run outlasts the 1.5 s ack wait (one image takes %s)", one[0])
	require.Zero(t, *late(), "no request of the long run was run again by another delivery")
	report(t, reliability{scenario: "a model run longer than the ack wait", sent: images, acked: images, answered: images, late: late(), recover: run,
		note: "recover: the run of " + strconv.Itoa(images) + " images (one takes " + one[0].Round(10*time.Millisecond).String() + "); its requests stay with their worker: none delivered again, none answered twice"})

	call("hasty", 1) // wakes its worker: the first call may time out
	late = lateSince(t, p.url)
	codes, took = call("hasty", images)
	answered := 0
	for i, code := range codes {
		require.Contains(t, []int{http.StatusOK, http.StatusGatewayTimeout}, code)
		require.Less(t, took[i], 800*time.Millisecond+time.Second, "answered, or 504 at the deadline")
		if code == http.StatusOK {
			answered++
		}
	}
	require.Less(t, answered, images, "some callers wait less than their requests take")
	time.Sleep(3 * time.Second) // the run their callers gave up on ends: its answers come, late
	report(t, reliability{scenario: "callers who wait less than the model takes (timeout 800 ms)", sent: images, acked: int64(answered), answered: int64(answered),
		failed: int64(images - answered), late: late(), recover: slices.Max(took),
		note: "failed are 504s at their deadline; late: answers that came after it, dropped; a request still queued when its caller has gone is not scored; recover: the slowest answer or 504"})
}
