package onnx

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/x448/float16"
	ort "github.com/yalue/onnxruntime_go"

	"sluice.dev/sluice/events"
)

// Run runs the model once. inputs must hold every input of the signature,
// in any order; the result holds every output, in signature order.
func (s *Session) Run(inputs []events.Tensor) ([]events.Tensor, error) {
	values := make([]ort.Value, len(s.signature.Inputs))
	defer destroy(values)
	for i, spec := range s.signature.Inputs {
		tensor, ok := events.FindTensor(inputs, spec.Name)
		if !ok {
			return nil, fmt.Errorf("onnx: input %q missing", spec.Name)
		}
		value, err := toValue(tensor)
		if err != nil {
			return nil, fmt.Errorf("onnx: input %q: %w", spec.Name, err)
		}
		values[i] = value
	}
	outputs := make([]ort.Value, len(s.signature.Outputs))
	defer destroy(outputs)
	if err := s.session.Run(values, outputs); err != nil {
		return nil, fmt.Errorf("onnx: run: %w", err)
	}
	result := make([]events.Tensor, len(outputs))
	for i, value := range outputs {
		tensor, err := fromValue(s.signature.Outputs[i].Name, value)
		if err != nil {
			return nil, fmt.Errorf("onnx: output %q: %w", s.signature.Outputs[i].Name, err)
		}
		result[i] = tensor
	}
	return result, nil
}

// destroy releases values. A run that failed while converting its outputs
// can leave a typed nil pointer behind, which must not be destroyed.
func destroy(values []ort.Value) {
	for _, v := range values {
		if v != nil && !reflect.ValueOf(v).IsNil() {
			_ = v.Destroy()
		}
	}
}

func toValue(t events.Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	switch data := t.Data.(type) {
	case []float32:
		return ort.NewTensor(shape, data)
	case []float64:
		return ort.NewTensor(shape, data)
	case []int64:
		return ort.NewTensor(shape, data)
	case []int32:
		return ort.NewTensor(shape, data)
	case []int16:
		return ort.NewTensor(shape, data)
	case []int8:
		return ort.NewTensor(shape, data)
	case []uint64:
		return ort.NewTensor(shape, data)
	case []uint32:
		return ort.NewTensor(shape, data)
	case []uint16:
		return ort.NewTensor(shape, data)
	case []uint8:
		return ort.NewTensor(shape, data)
	case []bool:
		return ort.NewTensor(shape, data)
	case []float16.Float16:
		raw := make([]byte, 2*len(data))
		for i, v := range data {
			raw[2*i], raw[2*i+1] = byte(v), byte(v>>8)
		}
		return ort.NewCustomDataTensor(shape, raw, ort.TensorElementDataTypeFloat16)
	case []string:
		// ONNX Runtime fills string tensors from C strings: a NUL byte would
		// silently cut the element short.
		for i, element := range data {
			if strings.IndexByte(element, 0) >= 0 {
				return nil, &events.FieldError{Field: fmt.Sprintf("%s.data[%d]", t.Name, i), Problem: "holds a NUL byte, which ONNX Runtime's string tensors cannot carry"}
			}
		}
		tensor, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, err
		}
		if err := tensor.SetContents(data); err != nil {
			_ = tensor.Destroy()
			return nil, err
		}
		return tensor, nil
	}
	return nil, fmt.Errorf("datatype %s (%T) is not supported", t.Datatype, t.Data)
}

func fromValue(name string, value ort.Value) (events.Tensor, error) {
	var data any
	switch v := value.(type) {
	case *ort.Tensor[float32]:
		data = v.GetData()
	case *ort.Tensor[float64]:
		data = v.GetData()
	case *ort.Tensor[int64]:
		data = v.GetData()
	case *ort.Tensor[int32]:
		data = v.GetData()
	case *ort.Tensor[int16]:
		data = v.GetData()
	case *ort.Tensor[int8]:
		data = v.GetData()
	case *ort.Tensor[uint64]:
		data = v.GetData()
	case *ort.Tensor[uint32]:
		data = v.GetData()
	case *ort.Tensor[uint16]:
		data = v.GetData()
	case *ort.Tensor[uint8]:
		data = v.GetData()
	case *ort.Tensor[bool]:
		data = v.GetData()
	case *ort.StringTensor:
		contents, err := v.GetContents()
		if err != nil {
			return events.Tensor{}, err
		}
		data = contents
	default:
		return events.Tensor{}, fmt.Errorf("output type %T is not supported", value)
	}
	return events.NewTensor(name, []int64(value.(interface{ GetShape() ort.Shape }).GetShape()), data)
}
