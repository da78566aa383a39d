package activator

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"sluice.dev/sluice/activator/inference"
	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// This file serves the Open Inference Protocol over gRPC
// (inference.GRPCInferenceService) with what the REST routes use: the same
// routing, validation, limits, asynchronous calls and idempotency. A
// ModelInfer request becomes a request in the binary tensor data extension
// that asks for binary outputs, so its tensors, typed contents or raw, go to
// the worker as bytes and come back as raw_output_contents.
//
// Metadata keys: idempotency-key (as the REST header), prefer:
// respond-async (the answer then holds no outputs, and its parameters
// status "pending" and location, where GET fetches the result), and
// sluice-sink-uri.

// ListenGRPC has Run serve gRPC on listener too, until Run returns. Call it
// before Run.
func (a *Activator) ListenGRPC(listener net.Listener) { a.grpcListener = listener }

// serveGRPC serves gRPC on the listener given to ListenGRPC until ctx ends,
// then stops taking calls and waits for those in flight, up to the
// shutdown timeout. Without a listener it only waits for ctx.
func (a *Activator) serveGRPC(ctx context.Context) error {
	if a.grpcListener == nil {
		<-ctx.Done()
		return nil
	}
	server := grpc.NewServer(
		grpc.ChainUnaryInterceptor(tracedGRPC, a.grpcAuthenticated), grpc.StreamInterceptor(a.grpcStreamAuthenticated),
		grpc.MaxRecvMsgSize(int(a.cfg.MaxBodyBytes)),
		grpc.MaxSendMsgSize(events.DefaultMaxAnswerBytes+1<<20),
	)
	inference.RegisterGRPCInferenceServiceServer(server, grpcService{a: a})
	reflection.Register(server)
	served := make(chan error, 1)
	go func() { served <- server.Serve(a.grpcListener) }()
	a.log.Info("activator listening for gRPC", "addr", a.grpcListener.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("activator: serve gRPC: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		server.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(a.shutdownTimeout()):
		server.Stop()
	}
	return nil
}

// grpcService is inference.GRPCInferenceService over an Activator.
type grpcService struct {
	inference.UnimplementedGRPCInferenceServiceServer
	a *Activator
}

var _ inference.GRPCInferenceServiceServer = grpcService{}

func (s grpcService) ServerLive(context.Context, *inference.ServerLiveRequest) (*inference.ServerLiveResponse, error) {
	return &inference.ServerLiveResponse{Live: true}, nil
}

func (s grpcService) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	select {
	case <-s.a.registry.Synced():
		return &inference.ServerReadyResponse{Ready: s.a.nc.IsConnected()}, nil
	default:
		return &inference.ServerReadyResponse{}, nil
	}
}

// ModelReady is false for a model that cannot run, and NotFound for one that
// is not deployed.
func (s grpcService) ModelReady(ctx context.Context, req *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	_, err := s.a.lookup(ctx, req.GetName(), req.GetVersion(), "")
	if err != nil && status(err) != http.StatusServiceUnavailable {
		return nil, grpcError(err)
	}
	return &inference.ModelReadyResponse{Ready: err == nil}, nil
}

func (s grpcService) ServerMetadata(context.Context, *inference.ServerMetadataRequest) (*inference.ServerMetadataResponse, error) {
	return &inference.ServerMetadataResponse{Name: "sluice", Version: Version, Extensions: []string{"cloudevents", "binary_tensor_data", "grpc"}}, nil
}

func (s grpcService) ModelMetadata(ctx context.Context, req *inference.ModelMetadataRequest) (*inference.ModelMetadataResponse, error) {
	m, err := s.a.metadata(ctx, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	tensors := func(specs []oip.TensorSpec) []*inference.ModelMetadataResponse_TensorMetadata {
		out := make([]*inference.ModelMetadataResponse_TensorMetadata, len(specs))
		for i, spec := range specs {
			out[i] = &inference.ModelMetadataResponse_TensorMetadata{Name: spec.Name, Datatype: string(spec.Datatype), Shape: spec.Shape}
		}
		return out
	}
	return &inference.ModelMetadataResponse{Name: m.Name, Versions: m.Versions, Platform: m.Platform, Inputs: tensors(m.Inputs), Outputs: tensors(m.Outputs)}, nil
}

// ModelInfer scores a request as POST /v2/models/{name}/infer does.
func (s grpcService) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	start := time.Now()
	name := req.GetModelName()
	resp, err := s.infer(ctx, req)
	code := http.StatusOK
	if err != nil {
		code = status(err)
	}
	s.a.metrics.observe(s.a.knownName(name), code, start)
	if code >= http.StatusInternalServerError {
		s.a.log.Warn("grpc infer", "function", name, "status", code, "error", err)
	}
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

func (s grpcService) infer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	release, err := s.a.takeSlot()
	if err != nil {
		return nil, err
	}
	defer release()
	fn, err := s.a.lookup(ctx, req.GetModelName(), req.GetModelVersion(), firstMetadata(ctx, strings.ToLower(functions.RouteKeyHeader)))
	if err != nil {
		return nil, err
	}
	body, headerLength, err := binaryRequest(req)
	if err != nil {
		return nil, err
	}
	if _, _, _, err := s.a.decodeInfer(binaryHeader(headerLength), body, fn); err != nil {
		return nil, err
	}
	id, err := grpcRequestID(ctx)
	if err != nil {
		return nil, err
	}
	ev := requestEvent(fn, id, body, headerLength)
	if wantsAsyncGRPC(ctx) {
		if err := s.a.enqueue(ctx, fn, ev, firstMetadata(ctx, strings.ToLower(events.HeaderSinkURI))); err != nil {
			return nil, err
		}
		return &inference.ModelInferResponse{ModelName: fn.Metadata.Name, ModelVersion: fn.Status.Revision, Id: id, Parameters: map[string]*inference.InferParameter{
			"status":   {ParameterChoice: &inference.InferParameter_StringParam{StringParam: events.ResultPending}},
			"location": {ParameterChoice: &inference.InferParameter_StringParam{StringParam: resultLocation(ev)}},
		}}, nil
	}
	reply, err := s.a.call(ctx, fn, ev, req.GetModelVersion() != "")
	if err != nil {
		return nil, err
	}
	replyHeaderLength, err := events.InferenceHeaderLengthOf(reply.Header)
	if err != nil {
		return nil, fmt.Errorf("read the worker's answer: %v", err)
	}
	return grpcResponse(reply.Data, int(replyHeaderLength))
}

// binaryHeader is the HTTP header of a body in the binary tensor data
// extension whose JSON header is headerLength bytes long.
func binaryHeader(headerLength int) http.Header {
	return http.Header{http.CanonicalHeaderKey(oip.HeaderInferenceHeaderContentLength): {fmt.Sprint(headerLength)}}
}

// grpcRequestID is the idempotency-key of the call's metadata, or a new id.
func grpcRequestID(ctx context.Context) (string, error) {
	header := http.Header{}
	if key := firstMetadata(ctx, "idempotency-key"); key != "" {
		header.Set("Idempotency-Key", key)
	}
	return requestID(&http.Request{Header: header})
}

// wantsAsyncGRPC reports whether the call's metadata says prefer: respond-async.
func wantsAsyncGRPC(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return wantsAsync(&http.Request{Header: http.Header{"Prefer": md.Get("prefer")}})
}

func firstMetadata(ctx context.Context, key string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if values := md.Get(key); len(values) > 0 {
		return values[0]
	}
	return ""
}

// grpcError is err as a gRPC status: the code of its HTTP status, and for
// 429 and 503 how long to wait before retrying.
func grpcError(err error) error {
	code := codes.Internal
	switch status(err) {
	case http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge:
		code = codes.InvalidArgument
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusForbidden:
		code = codes.PermissionDenied
	case http.StatusConflict:
		code = codes.AlreadyExists
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	case http.StatusGatewayTimeout:
		code = codes.DeadlineExceeded
	case 499:
		code = codes.Canceled
	}
	st := grpcstatus.New(code, err.Error())
	if code == codes.Unavailable || (code == codes.ResourceExhausted && status(err) == http.StatusTooManyRequests) {
		if detailed, detailErr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter * time.Second)}); detailErr == nil {
			st = detailed
		}
	}
	return st.Err()
}

// binaryRequest writes a ModelInferRequest as a body in the binary tensor
// data extension asking for every output in binary: each input's elements
// come from raw_input_contents or, typed, from its contents.
func binaryRequest(req *inference.ModelInferRequest) ([]byte, int, error) {
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(req.GetInputs()) {
		return nil, 0, &oip.FieldError{Field: "raw_input_contents", Problem: fmt.Sprintf("holds %d tensors for %d inputs", len(raw), len(req.GetInputs()))}
	}
	parameters, err := fromInferParameters(req.GetParameters())
	if err != nil {
		return nil, 0, err
	}
	parameters["binary_data_output"] = true
	head := requestHead{ID: req.GetId(), Parameters: parameters, Inputs: make([]tensorHead, len(req.GetInputs())), Outputs: make([]outputHead, len(req.GetOutputs()))}
	var tail []byte
	for i, input := range req.GetInputs() {
		field := fmt.Sprintf("inputs[%d]", i)
		data := []byte(nil)
		switch {
		case len(raw) > 0 && input.GetContents() != nil:
			return nil, 0, &oip.FieldError{Field: field + ".contents", Problem: "given with raw_input_contents: use one or the other"}
		case len(raw) > 0:
			data = raw[i]
		default:
			if data, err = typedContents(field, input); err != nil {
				return nil, 0, err
			}
		}
		inputParameters, err := fromInferParameters(input.GetParameters())
		if err != nil {
			return nil, 0, err
		}
		inputParameters["binary_data_size"] = len(data)
		head.Inputs[i] = tensorHead{Name: input.GetName(), Shape: nonNil(input.GetShape()), Datatype: input.GetDatatype(), Parameters: inputParameters}
		tail = append(tail, data...)
	}
	for i, output := range req.GetOutputs() {
		outputParameters, err := fromInferParameters(output.GetParameters())
		if err != nil {
			return nil, 0, err
		}
		outputParameters["binary_data"] = true
		head.Outputs[i] = outputHead{Name: output.GetName(), Parameters: outputParameters}
	}
	body, err := json.Marshal(head)
	if err != nil {
		return nil, 0, &oip.FieldError{Field: "parameters", Problem: err.Error()}
	}
	return append(body, tail...), len(body), nil
}

// requestHead, tensorHead and outputHead are the JSON inference header of a
// binary request.
type requestHead struct {
	ID         string         `json:"id,omitempty"`
	Parameters map[string]any `json:"parameters"`
	Inputs     []tensorHead   `json:"inputs"`
	Outputs    []outputHead   `json:"outputs,omitempty"`
}

type tensorHead struct {
	Name       string         `json:"name"`
	Shape      []int64        `json:"shape"`
	Datatype   string         `json:"datatype"`
	Parameters map[string]any `json:"parameters"`
}

type outputHead struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters"`
}

func nonNil(shape []int64) []int64 {
	if shape == nil {
		return []int64{}
	}
	return shape
}

// fromInferParameters reads gRPC parameters as the JSON ones.
func fromInferParameters(parameters map[string]*inference.InferParameter) (map[string]any, error) {
	out := make(map[string]any, len(parameters)+1)
	for name, parameter := range parameters {
		switch choice := parameter.GetParameterChoice().(type) {
		case *inference.InferParameter_BoolParam:
			out[name] = choice.BoolParam
		case *inference.InferParameter_Int64Param:
			out[name] = choice.Int64Param
		case *inference.InferParameter_StringParam:
			out[name] = choice.StringParam
		default:
			return nil, &oip.FieldError{Field: "parameters." + name, Problem: "holds no value"}
		}
	}
	return out, nil
}
