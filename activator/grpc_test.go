package activator_test

import (
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"sluice.dev/sluice/activator/inference"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// grpcClient is a client of the platform's gRPC endpoint, generated from the
// same proto as the server.
func (p *platform) grpcClient(t *testing.T) inference.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(p.run.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return inference.NewGRPCInferenceServiceClient(conn)
}

// irisInferRequest is irisBody over gRPC: one row, typed or raw.
func irisInferRequest(raw bool) *inference.ModelInferRequest {
	row := []float32{5.1, 3.5, 1.4, 0.2}
	input := &inference.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}}
	req := &inference.ModelInferRequest{ModelName: "iris", Id: "r1", Inputs: []*inference.ModelInferRequest_InferInputTensor{input}}
	if !raw {
		input.Contents = &inference.InferTensorContents{Fp32Contents: row}
		return req
	}
	var data []byte
	for _, v := range row {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	req.RawInputContents = [][]byte{data}
	return req
}

// answerBinary plays the worker for one request with a binary answer of one label.
func (p *platform) answerBinary(t *testing.T) *oip.InferenceRequest {
	t.Helper()
	request := takeRequest(t, p.js)
	ev, err := events.ReadEvent(t.Context(), request.Headers(), request.Data())
	require.NoError(t, err)
	decoded, _, err := events.DecodeRequestData(ev, oip.DefaultLimits())
	require.NoError(t, err)
	label, err := oip.NewTensor("label", []int64{1}, []int64{2})
	require.NoError(t, err)
	body, headerLength, err := oip.AppendInferenceResponseBinary(nil, &oip.InferenceResponse{ModelName: "iris", ModelVersion: "1", ID: decoded.ID, Outputs: []oip.Tensor{label}}, func(string) bool { return true })
	require.NoError(t, err)
	replyData(t, p.js, request, 0, body, headerLength)
	require.NoError(t, request.Ack())
	return decoded
}

func TestGRPCInfer(t *testing.T) {
	p := startPlatform(t, newSetup())
	client := p.grpcClient(t)
	for _, raw := range []bool{false, true} {
		answers := make(chan *inference.ModelInferResponse, 1)
		errs := make(chan error, 1)
		go func() {
			resp, err := client.ModelInfer(context.Background(), irisInferRequest(raw))
			answers <- resp
			errs <- err
		}()
		queued := p.answerBinary(t)
		require.Equal(t, []float32{5.1, 3.5, 1.4, 0.2}, queued.Inputs[0].Data, "the worker gets the tensor, typed or raw")
		require.NoError(t, <-errs)
		resp := <-answers
		require.Equal(t, "iris", resp.GetModelName())
		require.Equal(t, "r1", resp.GetId())
		require.Equal(t, "label", resp.GetOutputs()[0].GetName())
		require.Equal(t, []int64{1}, resp.GetOutputs()[0].GetShape())
		require.Equal(t, []byte{2, 0, 0, 0, 0, 0, 0, 0}, resp.GetRawOutputContents()[0])
	}
}

func TestGRPCMetadataAndHealth(t *testing.T) {
	p := startPlatform(t, newSetup())
	client := p.grpcClient(t)
	ctx := t.Context()
	live, err := client.ServerLive(ctx, &inference.ServerLiveRequest{})
	require.NoError(t, err)
	require.True(t, live.GetLive())
	ready, err := client.ServerReady(ctx, &inference.ServerReadyRequest{})
	require.NoError(t, err)
	require.True(t, ready.GetReady())
	server, err := client.ServerMetadata(ctx, &inference.ServerMetadataRequest{})
	require.NoError(t, err)
	require.Equal(t, "sluice", server.GetName())
	model, err := client.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "iris"})
	require.NoError(t, err)
	require.Equal(t, []string{"1"}, model.GetVersions())
	require.Equal(t, "input", model.GetInputs()[0].GetName())
	require.Equal(t, []int64{-1, 4}, model.GetInputs()[0].GetShape())
	modelReady, err := client.ModelReady(ctx, &inference.ModelReadyRequest{Name: "iris"})
	require.NoError(t, err)
	require.True(t, modelReady.GetReady())
	_, err = client.ModelReady(ctx, &inference.ModelReadyRequest{Name: "irs"})
	require.Equal(t, codes.NotFound, status.Code(err))
}

func TestGRPCErrors(t *testing.T) {
	p := startPlatform(t, newSetup())
	client := p.grpcClient(t)
	ctx := t.Context()

	unknown := irisInferRequest(false)
	unknown.ModelName = "irs"
	_, err := client.ModelInfer(ctx, unknown)
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)

	wrong := irisInferRequest(false)
	wrong.Inputs[0].Name = "features"
	_, err = client.ModelInfer(ctx, wrong)
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `inputs[0].name: model has no input "features"`)

	short := irisInferRequest(true)
	short.RawInputContents[0] = short.RawInputContents[0][:12]
	_, err = client.ModelInfer(ctx, short)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)

	both := irisInferRequest(true)
	both.Inputs[0].Contents = &inference.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}
	_, err = client.ModelInfer(ctx, both)
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	key := metadata.AppendToOutgoingContext(ctx, "idempotency-key", strings.Repeat("k", 300))
	_, err = client.ModelInfer(key, irisInferRequest(false))
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "Idempotency-Key: 300 bytes, at most 256")

	catalog, err := functions.OpenCatalog(ctx, p.js)
	require.NoError(t, err)
	require.NoError(t, catalog.SetRevisionState(ctx, "iris", "1", functions.RevisionFailed, "no kernel"))
	require.Eventually(t, func() bool {
		attempt, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err = client.ModelInfer(attempt, irisInferRequest(false))
		return status.Code(err) == codes.Unavailable
	}, time.Second, 10*time.Millisecond)
	require.Contains(t, status.Convert(err).Message(), "no kernel")
	var retry *errdetails.RetryInfo
	for _, detail := range status.Convert(err).Details() {
		if info, ok := detail.(*errdetails.RetryInfo); ok {
			retry = info
		}
	}
	require.NotNil(t, retry, "Unavailable says when to retry")
	require.Equal(t, time.Second, retry.GetRetryDelay().AsDuration())
	ready, err := client.ModelReady(ctx, &inference.ModelReadyRequest{Name: "iris"})
	require.NoError(t, err)
	require.False(t, ready.GetReady())
}

func TestGRPCAsync(t *testing.T) {
	p := startPlatform(t, newSetup())
	client := p.grpcClient(t)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "prefer", "respond-async", "idempotency-key", "grpc-7")
	resp, err := client.ModelInfer(ctx, irisInferRequest(false))
	require.NoError(t, err)
	require.Equal(t, "grpc-7", resp.GetId())
	require.Empty(t, resp.GetOutputs())
	require.Equal(t, events.ResultPending, resp.GetParameters()["status"].GetStringParam())
	require.Equal(t, "/v1/requests/grpc-7", resp.GetParameters()["location"].GetStringParam())
	require.EqualValues(t, 1, p.queued(t))
}

// A gRPC caller's traceparent metadata goes onto the queue with the request
// and comes back in the answer's header metadata.
func TestGRPCTraceContextGoesOntoTheQueue(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	p := startPlatform(t, newSetup())
	client := p.grpcClient(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent)
	var header metadata.MD
	errs := make(chan error, 1)
	go func() {
		_, err := client.ModelInfer(ctx, irisInferRequest(false), grpc.Header(&header))
		errs <- err
	}()
	request := takeRequest(t, p.js)
	require.Equal(t, traceparent, request.Headers().Get("ce-traceparent"))
	label, err := oip.NewTensor("label", []int64{1}, []int64{2})
	require.NoError(t, err)
	body, headerLength, err := oip.AppendInferenceResponseBinary(nil, &oip.InferenceResponse{ModelName: "iris", Outputs: []oip.Tensor{label}}, func(string) bool { return true })
	require.NoError(t, err)
	replyData(t, p.js, request, 0, body, headerLength)
	require.NoError(t, request.Ack())
	require.NoError(t, <-errs)
	require.Equal(t, []string{traceparent}, header.Get("traceparent"))
}
