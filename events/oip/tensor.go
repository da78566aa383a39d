package oip

import "github.com/x448/float16"

// Datatype is an Open Inference Protocol v2 tensor datatype.
type Datatype string

// The datatypes of the Open Inference Protocol v2.
const (
	Bool   Datatype = "BOOL"
	Uint8  Datatype = "UINT8"
	Uint16 Datatype = "UINT16"
	Uint32 Datatype = "UINT32"
	Uint64 Datatype = "UINT64"
	Int8   Datatype = "INT8"
	Int16  Datatype = "INT16"
	Int32  Datatype = "INT32"
	Int64  Datatype = "INT64"
	FP16   Datatype = "FP16"
	FP32   Datatype = "FP32"
	FP64   Datatype = "FP64"
	Bytes  Datatype = "BYTES"
)

// Size is the bytes one element of dt takes in binary, 0 for BYTES (whose
// elements vary) and for a datatype that is not one of the above.
func (dt Datatype) Size() int {
	if kind := binaryKindOf(dt); kind != nil {
		return kind.elementSize()
	}
	return 0
}

// Tensor is one named tensor of an inference request or response.
//
// Data holds the elements in row-major order as a typed slice matching
// Datatype: []bool, []uint8, []uint16, []uint32, []uint64, []int8, []int16,
// []int32, []int64, []float16.Float16, []float32, []float64, or []string for
// BYTES. len(Data) always equals the product of Shape.
type Tensor struct {
	Name       string         `json:"name"`
	Shape      []int64        `json:"shape"`
	Datatype   Datatype       `json:"datatype"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Data       any            `json:"data"`
}

// RequestedOutput names an output the caller wants back.
type RequestedOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferenceRequest is the body of an Open Inference Protocol v2 infer call.
type InferenceRequest struct {
	ID         string            `json:"id,omitempty"`
	Parameters map[string]any    `json:"parameters,omitempty"`
	Inputs     []Tensor          `json:"inputs"`
	Outputs    []RequestedOutput `json:"outputs,omitempty"`
}

// InferenceResponse is the body of an Open Inference Protocol v2 infer answer.
type InferenceResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           string         `json:"id,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	Outputs      []Tensor       `json:"outputs"`
}

// TensorSpec describes one input or output of a model, as Open Inference
// Protocol model metadata does: a dimension of -1 accepts any size.
type TensorSpec struct {
	Name     string   `json:"name"`
	Datatype Datatype `json:"datatype"`
	Shape    []int64  `json:"shape"`
}

// Signature is a model's inputs and outputs, read from its ONNX file.
type Signature struct {
	Inputs  []TensorSpec `json:"inputs"`
	Outputs []TensorSpec `json:"outputs"`
}

// FindTensor returns the tensor called name.
func FindTensor(tensors []Tensor, name string) (Tensor, bool) {
	for _, t := range tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Float64s reads the elements of a numeric tensor — floating point or
// integer — as float64; false for booleans, BYTES and unsigned 64-bit
// integers that a float64 may not hold.
func (t Tensor) Float64s() ([]float64, bool) {
	switch data := t.Data.(type) {
	case []float64:
		return data, true
	case []float32:
		return widen(data), true
	case []float16.Float16:
		out := make([]float64, len(data))
		for i, v := range data {
			out[i] = float64(v.Float32())
		}
		return out, true
	case []int64:
		return widen(data), true
	case []int32:
		return widen(data), true
	case []int16:
		return widen(data), true
	case []int8:
		return widen(data), true
	case []uint32:
		return widen(data), true
	case []uint16:
		return widen(data), true
	case []uint8:
		return widen(data), true
	}
	return nil, false
}

func widen[T float32 | int64 | int32 | int16 | int8 | uint32 | uint16 | uint8](data []T) []float64 {
	out := make([]float64, len(data))
	for i, v := range data {
		out[i] = float64(v)
	}
	return out
}
