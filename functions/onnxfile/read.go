package onnxfile

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// ReadSignature returns the inputs and outputs of the model's graph, in the
// order the graph lists them.
//
// Graph inputs that are also initializers are weights, not inputs a caller
// feeds, and are left out (older exporters list them as inputs). Element
// types map to Open Inference Protocol datatypes (FLOAT→FP32, DOUBLE→FP64,
// FLOAT16→FP16, STRING→BYTES, the rest by name); others, such as BFLOAT16,
// give an error wrapping ErrUnsupported that names the value. A dimension
// with a dim_value is that number; one with a dim_param, with neither, or
// with a negative dim_value is -1. A value without a shape (unknown rank)
// has a nil Shape; a scalar has an empty, non-nil one.
//
// Bytes that are not a well-formed model give an error wrapping
// ErrMalformed; ReadSignature never panics.
func ReadSignature(model []byte) (oip.Signature, error) {
	fields, err := readModel(model)
	if err != nil {
		return oip.Signature{}, err
	}
	return readGraphSignature(fields.graph)
}

// ReadMetadata returns the model's metadata_props as a map. A model without
// metadata gives an empty map; of a key that appears twice, the last value
// counts, as in ONNX Runtime.
func ReadMetadata(model []byte) (map[string]string, error) {
	fields, err := readModel(model)
	if err != nil {
		return nil, err
	}
	return fields.metadata, nil
}

// modelFields are the parts of a ModelProto that this package reads.
type modelFields struct {
	graph    []byte
	metadata map[string]string
}

// readModel walks the top level of a ModelProto. Fields of the model whose
// wire type does not match onnx.proto are taken as a sign that the bytes
// are not a model at all.
func readModel(model []byte) (modelFields, error) {
	if len(model) == 0 {
		return modelFields{}, fmt.Errorf("%w: empty file", ErrMalformed)
	}
	fields := modelFields{metadata: map[string]string{}}
	hasGraph := false
	err := walk(model, func(current field) error {
		switch current.number {
		case modelIRVersion:
			return current.expect(protowire.VarintType, "ir_version")
		case modelProducerName, modelProducerVersion, modelDocString, modelOpsetImport:
			return current.expect(protowire.BytesType, fmt.Sprintf("model field %d", current.number))
		case modelGraph:
			if err := current.expect(protowire.BytesType, "graph"); err != nil {
				return err
			}
			// Protobuf merges repeated occurrences of a message field, which is
			// what concatenating their bytes does.
			fields.graph = append(fields.graph, current.bytes...)
			hasGraph = true
		case modelMetadataProps:
			if err := current.expect(protowire.BytesType, "metadata_props"); err != nil {
				return err
			}
			return readMetadataEntry(current.bytes, fields.metadata)
		}
		return nil
	})
	if err != nil {
		return modelFields{}, fmt.Errorf("read model: %w", err)
	}
	if !hasGraph {
		return modelFields{}, fmt.Errorf("%w: the model has no graph", ErrMalformed)
	}
	return fields, nil
}

// readMetadataEntry adds one StringStringEntryProto to metadata.
func readMetadataEntry(entry []byte, metadata map[string]string) error {
	var key, value string
	err := walk(entry, func(current field) error {
		switch current.number {
		case entryKey:
			if err := current.expect(protowire.BytesType, "metadata key"); err != nil {
				return err
			}
			key = string(current.bytes)
		case entryValue:
			if err := current.expect(protowire.BytesType, "metadata value"); err != nil {
				return err
			}
			value = string(current.bytes)
		}
		return nil
	})
	if err != nil {
		return err
	}
	metadata[key] = value
	return nil
}

// readGraphSignature reads the inputs, outputs and initializer names of a
// GraphProto and builds the signature from them.
func readGraphSignature(graph []byte) (oip.Signature, error) {
	var inputs, outputs [][]byte
	initializers := map[string]bool{}
	err := walk(graph, func(current field) error {
		switch current.number {
		case graphInput, graphOutput, graphInitializer, graphSparseInitializer:
			if err := current.expect(protowire.BytesType, fmt.Sprintf("graph field %d", current.number)); err != nil {
				return err
			}
		}
		switch current.number {
		case graphInput:
			inputs = append(inputs, current.bytes)
		case graphOutput:
			outputs = append(outputs, current.bytes)
		case graphInitializer:
			name, err := readTensorName(current.bytes)
			initializers[name] = true
			return err
		case graphSparseInitializer:
			name, err := readSparseTensorName(current.bytes)
			initializers[name] = true
			return err
		}
		return nil
	})
	if err != nil {
		return oip.Signature{}, fmt.Errorf("read graph: %w", err)
	}
	if len(outputs) == 0 {
		return oip.Signature{}, fmt.Errorf("%w: the graph has no outputs", ErrMalformed)
	}
	signature := oip.Signature{Inputs: []oip.TensorSpec{}, Outputs: []oip.TensorSpec{}}
	for index, input := range inputs {
		spec, err := readValueInfo(input, "input", index)
		if err != nil {
			return oip.Signature{}, err
		}
		if !initializers[spec.Name] {
			signature.Inputs = append(signature.Inputs, spec)
		}
	}
	for index, output := range outputs {
		spec, err := readValueInfo(output, "output", index)
		if err != nil {
			return oip.Signature{}, err
		}
		signature.Outputs = append(signature.Outputs, spec)
	}
	return signature, nil
}

// readTensorName returns the name of a TensorProto.
func readTensorName(tensor []byte) (string, error) {
	var name string
	err := walk(tensor, func(current field) error {
		if current.number != tensorName {
			return nil
		}
		if err := current.expect(protowire.BytesType, "initializer name"); err != nil {
			return err
		}
		name = string(current.bytes)
		return nil
	})
	return name, err
}

// readSparseTensorName returns the name of a SparseTensorProto, which is
// the name of its values tensor.
func readSparseTensorName(sparse []byte) (string, error) {
	var values []byte
	err := walk(sparse, func(current field) error {
		if current.number != sparseTensorValues {
			return nil
		}
		if err := current.expect(protowire.BytesType, "sparse initializer values"); err != nil {
			return err
		}
		values = append(values, current.bytes...)
		return nil
	})
	if err != nil {
		return "", err
	}
	return readTensorName(values)
}

// readValueInfo reads one ValueInfoProto of the graph's inputs or outputs;
// role and index name it in errors until its name is known.
func readValueInfo(valueInfo []byte, role string, index int) (oip.TensorSpec, error) {
	var spec oip.TensorSpec
	var valueType []byte
	hasType := false
	err := walk(valueInfo, func(current field) error {
		switch current.number {
		case valueInfoName:
			if err := current.expect(protowire.BytesType, "name"); err != nil {
				return err
			}
			spec.Name = string(current.bytes)
		case valueInfoType:
			if err := current.expect(protowire.BytesType, "type"); err != nil {
				return err
			}
			valueType = append(valueType, current.bytes...)
			hasType = true
		}
		return nil
	})
	if err != nil {
		return oip.TensorSpec{}, fmt.Errorf("%s %d: %w", role, index, err)
	}
	if spec.Name == "" {
		return oip.TensorSpec{}, fmt.Errorf("%w: %s %d has no name", ErrMalformed, role, index)
	}
	if !hasType {
		return oip.TensorSpec{}, fmt.Errorf("%w: %s %q has no type", ErrMalformed, role, spec.Name)
	}
	spec.Datatype, spec.Shape, err = readType(valueType)
	if err != nil {
		return oip.TensorSpec{}, fmt.Errorf("%s %q: %w", role, spec.Name, err)
	}
	return spec, nil
}

// readType reads a TypeProto, which must hold a tensor type.
func readType(valueType []byte) (oip.Datatype, []int64, error) {
	var tensor []byte
	var kind protowire.Number
	err := walk(valueType, func(current field) error {
		switch current.number {
		case typeTensor, typeSequence, typeMap, typeSparseTensor, typeOptional:
			if err := current.expect(protowire.BytesType, "type"); err != nil {
				return err
			}
			if current.number != kind {
				tensor = nil // a later member of the oneof replaces an earlier one
			}
			kind = current.number
			tensor = append(tensor, current.bytes...)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	switch kind {
	case typeTensor:
		return readTensorType(tensor)
	case typeSequence:
		return "", nil, fmt.Errorf("%w: a sequence, not a tensor", ErrUnsupported)
	case typeMap:
		return "", nil, fmt.Errorf("%w: a map, not a tensor", ErrUnsupported)
	case typeSparseTensor:
		return "", nil, fmt.Errorf("%w: a sparse tensor, not a dense one", ErrUnsupported)
	case typeOptional:
		return "", nil, fmt.Errorf("%w: an optional, not a tensor", ErrUnsupported)
	}
	return "", nil, fmt.Errorf("%w: the type is empty", ErrMalformed)
}

// readTensorType reads a TypeProto.Tensor: its element type and shape.
func readTensorType(tensor []byte) (oip.Datatype, []int64, error) {
	var element elementType
	var shape []byte
	hasShape := false
	err := walk(tensor, func(current field) error {
		switch current.number {
		case tensorTypeElemType:
			if err := current.expect(protowire.VarintType, "elem_type"); err != nil {
				return err
			}
			element = elementType(int32(current.varint))
		case tensorTypeShape:
			if err := current.expect(protowire.BytesType, "shape"); err != nil {
				return err
			}
			shape = append(shape, current.bytes...)
			hasShape = true
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	datatype, ok := datatypeOfElement[element]
	if !ok {
		return "", nil, fmt.Errorf("%w: element type %v", ErrUnsupported, element)
	}
	if !hasShape {
		return datatype, nil, nil
	}
	dimensions, err := readShape(shape)
	return datatype, dimensions, err
}

// readShape reads a TensorShapeProto; see ReadSignature for how each
// dimension maps to a number.
func readShape(shape []byte) ([]int64, error) {
	dimensions := []int64{}
	err := walk(shape, func(current field) error {
		if current.number != shapeDim {
			return nil
		}
		if err := current.expect(protowire.BytesType, "dim"); err != nil {
			return err
		}
		size, err := readDimension(current.bytes)
		dimensions = append(dimensions, size)
		return err
	})
	if err != nil {
		return nil, err
	}
	return dimensions, nil
}

// readDimension reads one TensorShapeProto.Dimension.
func readDimension(dimension []byte) (int64, error) {
	size := int64(-1)
	err := walk(dimension, func(current field) error {
		switch current.number {
		case dimensionValue:
			if err := current.expect(protowire.VarintType, "dim_value"); err != nil {
				return err
			}
			size = max(int64(current.varint), -1)
		case dimensionParam:
			if err := current.expect(protowire.BytesType, "dim_param"); err != nil {
				return err
			}
			size = -1
		}
		return nil
	})
	return size, err
}

// field is one field of a protobuf message as it came off the wire.
type field struct {
	number   protowire.Number
	wireType protowire.Type
	varint   uint64 // the value when wireType is VarintType
	bytes    []byte // the value when wireType is BytesType; aliases the input
	raw      []byte // the value of any other wire type, as it came
}

// expect reports an error when the field's wire type is not the one
// onnx.proto gives it.
func (current field) expect(wireType protowire.Type, what string) error {
	if current.wireType != wireType {
		return fmt.Errorf("%w: %s has wire type %d, want %d", ErrMalformed, what, current.wireType, wireType)
	}
	return nil
}

// walk calls visit for each field of message, in wire order, and stops at
// the first error. Fixed-width and group fields are skipped after checking
// that they are complete.
func walk(message []byte, visit func(field) error) error {
	for len(message) > 0 {
		number, wireType, length := protowire.ConsumeTag(message)
		if length < 0 {
			return fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(length))
		}
		message = message[length:]
		current := field{number: number, wireType: wireType}
		switch wireType {
		case protowire.VarintType:
			current.varint, length = protowire.ConsumeVarint(message)
		case protowire.BytesType:
			current.bytes, length = protowire.ConsumeBytes(message)
		default:
			length = protowire.ConsumeFieldValue(number, wireType, message)
			if length >= 0 {
				current.raw = message[:length]
			}
		}
		if length < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrMalformed, number, protowire.ParseError(length))
		}
		message = message[length:]
		if err := visit(current); err != nil {
			return err
		}
	}
	return nil
}
