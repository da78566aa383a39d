// Package oip is the Open Inference Protocol v2 tensor codec: tensors and
// their datatypes, infer requests and responses in JSON and in the binary
// tensor data extension, the rows of a batch, and model signatures. It
// imports nothing of Sluice's and no NATS or CloudEvents, so the trainer,
// the ONNX file code and the ONNX Runtime adapter stay light.
package oip
