package e2e

import (
	"cmp"
	"encoding/base64"
	endian "encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"sluice.dev/sluice/activator/inference"
)

// grpcAddr reads the activator's gRPC address from the platform's log.
func grpcAddr(t *testing.T, p *platform) string {
	t.Helper()
	return p.logged(t, `msg="activator listening for gRPC" addr=`)
}

// grpcurl runs grpcurl, built by `make grpcurl`, against addr: with flags,
// then what to do (list, describe, a method).
func grpcurl(t *testing.T, addr string, flags []string, what ...string) string {
	t.Helper()
	args := append(append(append([]string{"-plaintext"}, flags...), addr), what...)
	out, err := exec.Command(grpcurlPath(t), args...).CombinedOutput()
	require.NoError(t, err, "grpcurl %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// The Open Inference Protocol over gRPC, as a user calls it: grpcurl through
// server reflection with typed contents, and a Go client generated from the
// same proto with raw contents.
func TestGRPCPrediction(t *testing.T) {
	p := startPlatform(t)
	addr := grpcAddr(t, p)
	require.Contains(t, grpcurl(t, addr, nil, "list"), "inference.GRPCInferenceService")
	require.Contains(t, grpcurl(t, addr, nil, "describe", "inference.GRPCInferenceService"), "rpc ModelInfer")

	request := `{"model_name":"iris","inputs":[{"name":"input","datatype":"FP32","shape":[2,4],"contents":{"fp32_contents":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}}]}`
	out := grpcurl(t, addr, []string{"-d", request}, "inference.GRPCInferenceService/ModelInfer")
	var answer struct {
		Outputs []struct {
			Name  string   `json:"name"`
			Shape []string `json:"shape"`
		} `json:"outputs"`
		RawOutputContents []string `json:"rawOutputContents"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &answer), out)
	require.Equal(t, "class", answer.Outputs[2].Name)
	require.Equal(t, []string{"2"}, answer.Outputs[2].Shape)
	classes, err := base64.StdEncoding.DecodeString(answer.RawOutputContents[2])
	require.NoError(t, err)
	require.Equal(t, "\x06\x00\x00\x00setosa\x09\x00\x00\x00virginica", string(classes))

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	var raw []byte
	for _, v := range []float32{6.7, 3.0, 5.2, 2.3} {
		raw = endian.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	resp, err := inference.NewGRPCInferenceServiceClient(conn).ModelInfer(t.Context(), &inference.ModelInferRequest{
		ModelName:        "iris",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}}},
		Outputs:          []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "label"}},
		RawInputContents: [][]byte{raw},
	})
	require.NoError(t, err)
	require.Len(t, resp.GetOutputs(), 1)
	require.Equal(t, "label", resp.GetOutputs()[0].GetName())
	require.Equal(t, uint64(2), endian.LittleEndian.Uint64(resp.GetRawOutputContents()[0]))
}

// grpcurlPath is where `make grpcurl` built grpcurl ($SLUICE_GRPCURL overrides).
func grpcurlPath(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs(cmp.Or(os.Getenv("SLUICE_GRPCURL"), "../.cache/grpcurl/v1.9.4/grpcurl"))
	require.NoError(t, err)
	_, err = os.Stat(path)
	require.NoError(t, err, "grpcurl is missing: run `make grpcurl`")
	return path
}
