package onnxfile

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// Model is an ONNX model to write: one graph, the versions of the operator
// sets its nodes use, and metadata.
type Model struct {
	// IRVersion is the ONNX IR version; 0 means DefaultIRVersion.
	IRVersion int64
	// OpsetVersion is the ai.onnx operator set version; 0 means
	// DefaultOpsetVersion.
	OpsetVersion int64
	// ExtraOpsets are the operator sets of other domains, such as MLDomain,
	// written as opset_import after the default one, in this order. Every
	// domain a node names must be here.
	ExtraOpsets     []Opset
	ProducerName    string
	ProducerVersion string
	// Metadata is written as metadata_props, in key order.
	Metadata map[string]string
	Graph    Graph
}

// Graph is the computation of a Model.
type Graph struct {
	// Name is the graph's name; "" means "main".
	Name string
	// Nodes must be in topological order.
	Nodes        []Node
	Initializers []Initializer
	Inputs       []ValueInfo
	Outputs      []ValueInfo
}

// Opset is an operator set a Model imports: a domain other than the
// default one, and its version.
type Opset struct {
	Domain  string
	Version int64
}

// Node is one operator of a Graph.
type Node struct {
	OpType string
	// Domain is the operator set domain of OpType, such as MLDomain; ""
	// means the default (ai.onnx) domain.
	Domain     string
	Name       string
	Inputs     []string
	Outputs    []string
	Attributes []Attribute
}

// Attribute is a named attribute of a Node. Make one with IntAttribute,
// IntsAttribute, FloatAttribute, StringAttribute or StringsAttribute.
type Attribute struct {
	name         string
	kind         int
	intValue     int64
	intValues    []int64
	floatValue   float32
	stringValue  string
	stringValues []string
	tensorValue  []byte // an encoded TensorProto
}

// IntAttribute is an INT attribute.
func IntAttribute(name string, value int64) Attribute {
	return Attribute{name: name, kind: attributeKindInt, intValue: value}
}

// IntsAttribute is an INTS attribute.
func IntsAttribute(name string, values ...int64) Attribute {
	return Attribute{name: name, kind: attributeKindInts, intValues: slices.Clone(values)}
}

// FloatAttribute is a FLOAT attribute.
func FloatAttribute(name string, value float32) Attribute {
	return Attribute{name: name, kind: attributeKindFloat, floatValue: value}
}

// StringAttribute is a STRING attribute.
func StringAttribute(name, value string) Attribute {
	return Attribute{name: name, kind: attributeKindString, stringValue: value}
}

// StringsAttribute is a STRINGS attribute.
func StringsAttribute(name string, values ...string) Attribute {
	return Attribute{name: name, kind: attributeKindStrings, stringValues: slices.Clone(values)}
}

// tensorAttribute is a TENSOR attribute holding an encoded TensorProto.
func tensorAttribute(name string, tensor []byte) Attribute {
	return Attribute{name: name, kind: attributeKindTensor, tensorValue: tensor}
}

// Name returns the attribute's name.
func (attribute Attribute) Name() string { return attribute.name }

// Initializer is a constant FP32 tensor of a Graph, stored as little-endian
// raw_data. Values are in row-major order and their count must equal the
// product of Dims (1 for a scalar, whose Dims are empty).
type Initializer struct {
	Name   string
	Dims   []int64
	Values []float32
}

// ValueInfo is a tensor input or output of a Graph. A Shape entry of -1
// is written as a symbolic dimension (dim_param): "N" for the first
// dimension, which is the batch dimension shared by all inputs and
// outputs, and "<name>_dim<index>" for the others. A nil Shape writes no
// shape (unknown rank); an empty one writes a scalar.
type ValueInfo struct {
	Name     string
	Datatype oip.Datatype
	Shape    []int64
}

// Marshal encodes the model as an ONNX protobuf file. It checks what it
// can without knowing the operators: names, datatypes, dimensions, that
// each initializer holds as many values as its dims call for, and that
// each node's domain is imported.
func (model Model) Marshal() ([]byte, error) {
	irVersion := cmp.Or(model.IRVersion, DefaultIRVersion)
	opsetVersion := cmp.Or(model.OpsetVersion, DefaultOpsetVersion)
	if irVersion < 0 || opsetVersion < 0 {
		return nil, fmt.Errorf("marshal model: negative version (ir %d, opset %d)", irVersion, opsetVersion)
	}
	opsets := append([]Opset{{Domain: "", Version: opsetVersion}}, model.ExtraOpsets...)
	if err := checkOpsets(opsets, model.Graph.Nodes); err != nil {
		return nil, fmt.Errorf("marshal model: %w", err)
	}
	graph, err := model.Graph.marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal model: %w", err)
	}
	var out []byte
	out = appendVarintField(out, modelIRVersion, uint64(irVersion))
	if model.ProducerName != "" {
		out = appendStringField(out, modelProducerName, model.ProducerName)
	}
	if model.ProducerVersion != "" {
		out = appendStringField(out, modelProducerVersion, model.ProducerVersion)
	}
	out = appendBytesField(out, modelGraph, graph)
	for _, imported := range opsets {
		var opset []byte
		opset = appendStringField(opset, opsetIDDomain, imported.Domain)
		opset = appendVarintField(opset, opsetIDVersion, uint64(imported.Version))
		out = appendBytesField(out, modelOpsetImport, opset)
	}
	keys := make([]string, 0, len(model.Metadata))
	for key := range model.Metadata {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		var entry []byte
		entry = appendStringField(entry, entryKey, key)
		entry = appendStringField(entry, entryValue, model.Metadata[key])
		out = appendBytesField(out, modelMetadataProps, entry)
	}
	return out, nil
}

// checkOpsets checks the operator sets a model imports, the default one
// first, and that every domain its nodes name is among them. "ai.onnx" is
// another name of the default domain.
func checkOpsets(opsets []Opset, nodes []Node) error {
	imported := map[string]bool{"": true, "ai.onnx": true}
	for index, opset := range opsets[1:] {
		if imported[opset.Domain] {
			if opset.Domain == "" || opset.Domain == "ai.onnx" {
				return fmt.Errorf("extra opset %d: domain %q is the default one, set OpsetVersion instead", index, opset.Domain)
			}
			return fmt.Errorf("extra opset %d: domain %q is imported twice", index, opset.Domain)
		}
		if opset.Version < 1 {
			return fmt.Errorf("extra opset %d (%q): version is %d, want 1 or more", index, opset.Domain, opset.Version)
		}
		imported[opset.Domain] = true
	}
	for index, node := range nodes {
		if !imported[node.Domain] {
			return fmt.Errorf("node %d (%s %q): domain %q is not imported: add it to ExtraOpsets", index, node.OpType, node.Name, node.Domain)
		}
	}
	return nil
}

// marshal encodes a GraphProto.
func (graph Graph) marshal() ([]byte, error) {
	if len(graph.Outputs) == 0 {
		return nil, fmt.Errorf("graph %q has no outputs", graph.Name)
	}
	var out []byte
	for index, node := range graph.Nodes {
		encoded, err := node.marshal()
		if err != nil {
			return nil, fmt.Errorf("node %d (%s %q): %w", index, node.OpType, node.Name, err)
		}
		out = appendBytesField(out, graphNode, encoded)
	}
	out = appendStringField(out, graphName, cmp.Or(graph.Name, "main"))
	seen := map[string]bool{}
	for index, initializer := range graph.Initializers {
		if seen[initializer.Name] {
			return nil, fmt.Errorf("initializer %d: name %q is used twice", index, initializer.Name)
		}
		seen[initializer.Name] = true
		encoded, err := initializer.marshal()
		if err != nil {
			return nil, fmt.Errorf("initializer %d (%q): %w", index, initializer.Name, err)
		}
		out = appendBytesField(out, graphInitializer, encoded)
	}
	for _, list := range []struct {
		role   string
		number protowire.Number
		values []ValueInfo
	}{{"input", graphInput, graph.Inputs}, {"output", graphOutput, graph.Outputs}} {
		names := map[string]bool{}
		for index, value := range list.values {
			if names[value.Name] {
				return nil, fmt.Errorf("%s %d: name %q is used twice", list.role, index, value.Name)
			}
			names[value.Name] = true
			encoded, err := value.marshal()
			if err != nil {
				return nil, fmt.Errorf("%s %d (%q): %w", list.role, index, value.Name, err)
			}
			out = appendBytesField(out, list.number, encoded)
		}
	}
	return out, nil
}

// marshal encodes a NodeProto.
func (node Node) marshal() ([]byte, error) {
	if node.OpType == "" {
		return nil, fmt.Errorf("no op type")
	}
	if len(node.Outputs) == 0 {
		return nil, fmt.Errorf("no outputs")
	}
	var out []byte
	for _, input := range node.Inputs {
		out = appendStringField(out, nodeInput, input)
	}
	for _, output := range node.Outputs {
		out = appendStringField(out, nodeOutput, output)
	}
	if node.Name != "" {
		out = appendStringField(out, nodeName, node.Name)
	}
	out = appendStringField(out, nodeOpType, node.OpType)
	names := map[string]bool{}
	for index, attribute := range node.Attributes {
		if attribute.name == "" || attribute.kind == 0 {
			return nil, fmt.Errorf("attribute %d: make attributes with IntAttribute, IntsAttribute, FloatAttribute, StringAttribute or StringsAttribute, with a name", index)
		}
		if names[attribute.name] {
			return nil, fmt.Errorf("attribute %q is set twice", attribute.name)
		}
		names[attribute.name] = true
		out = appendBytesField(out, nodeAttribute, attribute.marshal())
	}
	if node.Domain != "" {
		out = appendStringField(out, nodeDomain, node.Domain)
	}
	return out, nil
}

// marshal encodes an AttributeProto.
func (attribute Attribute) marshal() []byte {
	var out []byte
	out = appendStringField(out, attributeName, attribute.name)
	switch attribute.kind {
	case attributeKindFloat:
		out = protowire.AppendTag(out, attributeFloat, protowire.Fixed32Type)
		out = protowire.AppendFixed32(out, math.Float32bits(attribute.floatValue))
	case attributeKindInt:
		out = appendVarintField(out, attributeInt, uint64(attribute.intValue))
	case attributeKindString:
		out = appendStringField(out, attributeString, attribute.stringValue)
	case attributeKindTensor:
		out = appendBytesField(out, attributeTensor, attribute.tensorValue)
	case attributeKindInts:
		// onnx.proto is proto2 and does not declare ints packed: one field each.
		for _, value := range attribute.intValues {
			out = appendVarintField(out, attributeInts, uint64(value))
		}
	case attributeKindStrings:
		for _, value := range attribute.stringValues {
			out = appendStringField(out, attributeStrings, value)
		}
	}
	return appendVarintField(out, attributeType, uint64(attribute.kind))
}

// marshal encodes a TensorProto of FP32 values in raw_data.
func (initializer Initializer) marshal() ([]byte, error) {
	if initializer.Name == "" {
		return nil, fmt.Errorf("no name")
	}
	elements := int64(1)
	for index, size := range initializer.Dims {
		if size < 0 {
			return nil, fmt.Errorf("dimension %d is %d, want 0 or more", index, size)
		}
		if size > 0 && elements > math.MaxInt32/size {
			return nil, fmt.Errorf("dims %v hold too many elements", initializer.Dims)
		}
		elements *= size
	}
	if elements != int64(len(initializer.Values)) {
		return nil, fmt.Errorf("dims %v call for %d values, have %d", initializer.Dims, elements, len(initializer.Values))
	}
	var out []byte
	for _, size := range initializer.Dims {
		out = appendVarintField(out, tensorDims, uint64(size))
	}
	out = appendVarintField(out, tensorDataType, uint64(elementFloat))
	out = appendStringField(out, tensorName, initializer.Name)
	raw := make([]byte, 0, 4*len(initializer.Values))
	for _, value := range initializer.Values {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(value))
	}
	return appendBytesField(out, tensorRawData, raw), nil
}

// marshal encodes a ValueInfoProto holding a tensor type. BYTES is written
// as the STRING element type.
func (value ValueInfo) marshal() ([]byte, error) {
	if value.Name == "" {
		return nil, fmt.Errorf("no name")
	}
	element, ok := elementOfDatatype(value.Datatype)
	if !ok {
		return nil, fmt.Errorf("datatype %q is not one of the Open Inference Protocol datatypes", value.Datatype)
	}
	var tensor []byte
	tensor = appendVarintField(tensor, tensorTypeElemType, uint64(element))
	if value.Shape != nil {
		var shape []byte
		for index, size := range value.Shape {
			var dimension []byte
			switch {
			case size == -1 && index == 0:
				dimension = appendStringField(dimension, dimensionParam, "N")
			case size == -1:
				dimension = appendStringField(dimension, dimensionParam, fmt.Sprintf("%s_dim%d", value.Name, index))
			case size >= 0:
				dimension = appendVarintField(dimension, dimensionValue, uint64(size))
			default:
				return nil, fmt.Errorf("dimension %d is %d, want -1 or more", index, size)
			}
			shape = appendBytesField(shape, shapeDim, dimension)
		}
		tensor = appendBytesField(tensor, tensorTypeShape, shape)
	}
	var valueType []byte
	valueType = appendBytesField(valueType, typeTensor, tensor)
	var out []byte
	out = appendStringField(out, valueInfoName, value.Name)
	return appendBytesField(out, valueInfoType, valueType), nil
}

// appendVarintField appends a varint field.
func appendVarintField(out []byte, number protowire.Number, value uint64) []byte {
	out = protowire.AppendTag(out, number, protowire.VarintType)
	return protowire.AppendVarint(out, value)
}

// appendStringField appends a string field.
func appendStringField(out []byte, number protowire.Number, value string) []byte {
	out = protowire.AppendTag(out, number, protowire.BytesType)
	return protowire.AppendString(out, value)
}

// appendBytesField appends a bytes or embedded message field.
func appendBytesField(out []byte, number protowire.Number, value []byte) []byte {
	out = protowire.AppendTag(out, number, protowire.BytesType)
	return protowire.AppendBytes(out, value)
}
