package onnx

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/x448/float16"
	ort "github.com/yalue/onnxruntime_go"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
)

// Run runs the model once. inputs must hold every input of the signature,
// in any order; the result holds every output, in signature order.
func (s *Session) Run(inputs []oip.Tensor) ([]oip.Tensor, error) {
	values := make([]ort.Value, len(s.signature.Inputs))
	defer destroy(values)
	for i, spec := range s.signature.Inputs {
		tensor, ok := oip.FindTensor(inputs, spec.Name)
		if !ok {
			return nil, fmt.Errorf("onnx: input %q missing", spec.Name)
		}
		value, err := toValue(tensor, s.inputs[i])
		if err != nil {
			return nil, fmt.Errorf("onnx: input %q: %w", spec.Name, err)
		}
		values[i] = value
	}
	if s.placeholder != nil {
		values = []ort.Value{s.placeholder} // not destroyed (the deferred call has the empty slice): the session owns it
	}
	outputs := make([]ort.Value, len(s.signature.Outputs), len(s.signature.Outputs)+len(s.outputs))
	for _, port := range s.outputs {
		if port.Shape != "" {
			outputs = append(outputs, nil)
		}
	}
	defer destroy(outputs)
	if err := s.session.Run(values, outputs); err != nil {
		return nil, fmt.Errorf("onnx: run: %w", err)
	}
	result := make([]oip.Tensor, len(s.signature.Outputs))
	shapes := outputs[len(result):]
	for i, port := range s.outputs {
		var shape ort.Value
		if port.Shape != "" {
			shape, shapes = shapes[0], shapes[1:]
		}
		tensor, err := fromValue(s.signature.Outputs[i].Name, outputs[i], shape, port)
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

// toValue makes the ONNX Runtime value that port takes from t: a scalar as
// shape [1], FP16 as FP32.
func toValue(t oip.Tensor, port onnxfile.Port) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	switch {
	case port.Scalar:
		shape = ort.NewShape(1)
	case len(shape) == 0:
		return nil, &oip.FieldError{Field: t.Name + ".shape", Problem: "the model does not declare this input's rank, and a scalar can only be given to an input declared rank 0"}
	}
	if data, ok := t.Data.([]float16.Float16); ok && port.FP16 {
		widened := make([]float32, len(data))
		for i, v := range data {
			widened[i] = v.Float32()
		}
		return ort.NewTensor(shape, widened)
	}
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
	case []string:
		// ONNX Runtime fills string tensors from C strings: a NUL byte would
		// silently cut the element short.
		for i, element := range data {
			if strings.IndexByte(element, 0) >= 0 {
				return nil, &oip.FieldError{Field: fmt.Sprintf("%s.data[%d]", t.Name, i), Problem: "holds a NUL byte, which ONNX Runtime's string tensors cannot carry"}
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

// fromValue reads an output of the session back as the signature's tensor
// called name: port says how it crossed, and shape holds the dimensions of an
// output of unknown rank, which crossed flat.
func fromValue(name string, value, shape ort.Value, port onnxfile.Port) (oip.Tensor, error) {
	var data any
	switch v := value.(type) {
	case *ort.Tensor[float32]:
		data = v.GetData()
		if port.FP16 {
			narrowed := make([]float16.Float16, len(v.GetData()))
			for i, f := range v.GetData() {
				narrowed[i] = float16.Fromfloat32(f)
			}
			data = narrowed
		}
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
			return oip.Tensor{}, err
		}
		data = contents
	default:
		return oip.Tensor{}, fmt.Errorf("output type %T is not supported", value)
	}
	dimensions := []int64(value.(interface{ GetShape() ort.Shape }).GetShape())
	switch {
	case port.Scalar:
		dimensions = []int64{}
	case port.Shape != "":
		given, ok := shape.(*ort.Tensor[int64])
		if !ok {
			return oip.Tensor{}, fmt.Errorf("its shape came as %T, not INT64", shape)
		}
		dimensions = slices.Clone(given.GetData())
	}
	return oip.NewTensor(name, dimensions, data)
}
