// Package inference is the Open Inference Protocol's gRPC API
// (inference.GRPCInferenceService), generated with protoc-gen-go and
// protoc-gen-go-grpc from the protocol's public grpc_predict_v2.proto (as
// KServe publishes it under docs/predict-api/v2), with the Go package set by
// --go_opt=Mgrpc_predict_v2.proto=sluice.dev/sluice/activator/inference. The
// activator serves it (activator/grpc.go); clients may use it too.
package inference
