package onnxfile

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// Port is how one input or output of a model crosses into ONNX Runtime once
// the model is adapted (see Adapt).
type Port struct {
	// Name is the port's name in the adapted model.
	Name string
	// Scalar says the model's tensor is rank 0 and the port has shape [1].
	Scalar bool
	// FP16 says the model's tensor is FP16 and the port is FP32, which
	// holds every FP16 value exactly.
	FP16 bool
	// Shape, for an output of unknown rank, names the adapted model's
	// output that gives its shape (INT64, one element a dimension); the
	// port itself gives the data flat.
	Shape string
}

// Adapted is a model rewritten so that every tensor of its signature can
// cross into ONNX Runtime as a tensor of rank one or more in a datatype Go
// has a type for.
type Adapted struct {
	// Signature is the original model's, as ReadSignature reads it.
	Signature oip.Signature
	// Model is the rewritten model, or the original when nothing needed it.
	Model []byte
	// Inputs and Outputs follow the order of the signature.
	Inputs, Outputs []Port
	// Placeholder, for a model without inputs, names the BOOL [1] input the
	// adapted model takes instead and does not use: ONNX Runtime's Go
	// binding cannot run a session without inputs.
	Placeholder string
}

// Adapt wraps the inputs and outputs of model that ONNX Runtime's Go binding
// cannot carry as they are: a rank-0 input is fed as shape [1] and reshaped
// to a scalar inside the graph, a rank-0 output is reshaped to [1]; an output
// of unknown rank, which may turn out a scalar, is given flat with its shape
// beside it; an FP16 input or output crosses as FP32 through a Cast; a model
// without inputs gets one it ignores (Adapted.Placeholder). The
// nodes that do it are ordinary ONNX operators (Reshape, Shape, Cast,
// Constant), so the model computes what it did. A model that needs none of
// this is returned as it is.
func Adapt(model []byte) (Adapted, error) {
	fields, err := readModel(model)
	if err != nil {
		return Adapted{}, err
	}
	signature, err := readGraphSignature(fields.graph)
	if err != nil {
		return Adapted{}, err
	}
	rewrite := newGraphRewrite(fields.graph)
	adapted := Adapted{Signature: signature, Model: model, Inputs: make([]Port, len(signature.Inputs)), Outputs: make([]Port, len(signature.Outputs))}
	for i, spec := range signature.Inputs {
		adapted.Inputs[i] = rewrite.input(spec)
	}
	for i, spec := range signature.Outputs {
		adapted.Outputs[i] = rewrite.output(spec)
	}
	if len(signature.Inputs) == 0 {
		adapted.Placeholder = rewrite.placeholder()
	}
	if !rewrite.changed() {
		return adapted, nil
	}
	graph, err := rewrite.graph()
	if err != nil {
		return Adapted{}, fmt.Errorf("adapt model: %w", err)
	}
	adapted.Model = replaceGraph(model, graph)
	return adapted, nil
}

// graphRewrite collects what Adapt changes in one GraphProto.
type graphRewrite struct {
	original []byte
	names    map[string]bool // every name the graph uses, and the new ones
	// inputs and outputs map a rewritten graph input or output to the
	// ValueInfos that replace it.
	inputs, outputs map[string][]ValueInfo
	// added are new graph inputs.
	added []ValueInfo
	// first and last are nodes to put before and after the graph's own.
	first, last []Node
	constants   int
}

func newGraphRewrite(graph []byte) *graphRewrite {
	names := map[string]bool{}
	_ = walk(graph, func(current field) error { // read once already by readGraphSignature
		switch current.number {
		case graphNode:
			return walk(current.bytes, func(node field) error {
				if node.number == nodeInput || node.number == nodeOutput {
					names[string(node.bytes)] = true
				}
				return nil
			})
		case graphInput, graphOutput:
			return walk(current.bytes, func(value field) error {
				if value.number == valueInfoName {
					names[string(value.bytes)] = true
				}
				return nil
			})
		case graphInitializer:
			name, _ := readTensorName(current.bytes)
			names[name] = true
		}
		return nil
	})
	return &graphRewrite{original: graph, names: names, inputs: map[string][]ValueInfo{}, outputs: map[string][]ValueInfo{}}
}

func (r *graphRewrite) changed() bool { return len(r.inputs)+len(r.outputs)+len(r.added) > 0 }

// placeholder adds an input that no node reads.
func (r *graphRewrite) placeholder() string {
	name := r.fresh("sluice.placeholder")
	r.added = append(r.added, ValueInfo{Name: name, Datatype: oip.Bool, Shape: []int64{1}})
	return name
}

// fresh returns a name the graph does not use yet, and reserves it.
func (r *graphRewrite) fresh(base string) string {
	name := base
	for r.names[name] {
		name += "_"
	}
	r.names[name] = true
	return name
}

// input rewrites one graph input when it is a scalar or FP16.
func (r *graphRewrite) input(spec oip.TensorSpec) Port {
	port := Port{Name: spec.Name, Scalar: spec.Shape != nil && len(spec.Shape) == 0, FP16: spec.Datatype == oip.FP16}
	if !port.Scalar && !port.FP16 {
		return port
	}
	port.Name = r.fresh(spec.Name + ":sluice.in")
	fed := ValueInfo{Name: port.Name, Datatype: spec.Datatype, Shape: spec.Shape}
	value := port.Name
	if port.Scalar {
		fed.Shape = []int64{1}
		next := spec.Name
		if port.FP16 {
			next = r.fresh(spec.Name + ":sluice.scalar")
		}
		r.first = append(r.first, Node{OpType: "Reshape", Inputs: []string{value, r.constant()}, Outputs: []string{next}})
		value = next
	}
	if port.FP16 {
		fed.Datatype = oip.FP32
		r.first = append(r.first, Node{OpType: "Cast", Inputs: []string{value}, Outputs: []string{spec.Name}, Attributes: []Attribute{IntAttribute("to", int64(elementFloat16))}})
	}
	r.inputs[spec.Name] = []ValueInfo{fed}
	return port
}

// output rewrites one graph output when it is a scalar, of unknown rank or FP16.
func (r *graphRewrite) output(spec oip.TensorSpec) Port {
	port := Port{Name: spec.Name, Scalar: spec.Shape != nil && len(spec.Shape) == 0, FP16: spec.Datatype == oip.FP16}
	unknownRank := spec.Shape == nil
	if _, done := r.outputs[spec.Name]; done || (!port.Scalar && !port.FP16 && !unknownRank) {
		if done {
			return r.portOf(spec.Name, port)
		}
		return port
	}
	given := ValueInfo{Datatype: spec.Datatype, Shape: spec.Shape}
	value := spec.Name
	if port.FP16 {
		given.Datatype = oip.FP32
		cast := r.fresh(spec.Name + ":sluice.fp32")
		r.last = append(r.last, Node{OpType: "Cast", Inputs: []string{value}, Outputs: []string{cast}, Attributes: []Attribute{IntAttribute("to", int64(elementFloat))}})
		value = cast
	}
	var outputs []ValueInfo
	switch {
	case port.Scalar:
		given.Shape = []int64{1}
		reshaped := r.fresh(spec.Name + ":sluice.out")
		r.last = append(r.last, Node{OpType: "Reshape", Inputs: []string{value, r.constant(1)}, Outputs: []string{reshaped}})
		value = reshaped
	case unknownRank:
		given.Shape = []int64{-1}
		flat := r.fresh(spec.Name + ":sluice.out")
		port.Shape = r.fresh(spec.Name + ":sluice.shape")
		r.last = append(r.last,
			Node{OpType: "Reshape", Inputs: []string{value, r.constant(-1)}, Outputs: []string{flat}},
			Node{OpType: "Shape", Inputs: []string{spec.Name}, Outputs: []string{port.Shape}})
		outputs = append(outputs, ValueInfo{Name: port.Shape, Datatype: oip.Int64, Shape: []int64{-1}})
		value = flat
	}
	given.Name, port.Name = value, value
	r.outputs[spec.Name] = append([]ValueInfo{given}, outputs...)
	return port
}

// portOf is the port of an output listed twice: the one made for its first listing.
func (r *graphRewrite) portOf(name string, port Port) Port {
	values := r.outputs[name]
	port.Name = values[0].Name
	if len(values) > 1 {
		port.Shape = values[1].Name
	}
	return port
}

// constant adds a Constant node giving values as an INT64 tensor of rank
// one, and returns its output's name.
func (r *graphRewrite) constant(values ...int64) string {
	r.constants++
	name := r.fresh(fmt.Sprintf("sluice.constant%d", r.constants))
	var tensor []byte
	tensor = appendVarintField(tensor, tensorDims, uint64(len(values)))
	tensor = appendVarintField(tensor, tensorDataType, uint64(elementInt64))
	var raw []byte
	for _, value := range values {
		raw = protowire.AppendFixed64(raw, uint64(value))
	}
	tensor = appendBytesField(tensor, tensorRawData, raw)
	r.first = append(r.first, Node{OpType: "Constant", Outputs: []string{name}, Attributes: []Attribute{tensorAttribute("value", tensor)}})
	return name
}

// graph writes the rewritten GraphProto: the new nodes before and after the
// graph's own, and the rewritten inputs and outputs in place of the old.
func (r *graphRewrite) graph() ([]byte, error) {
	var out []byte
	for _, node := range r.first {
		encoded, err := node.marshal()
		if err != nil {
			return nil, err
		}
		out = appendBytesField(out, graphNode, encoded)
	}
	err := walk(r.original, func(current field) error {
		replaced := map[protowire.Number]map[string][]ValueInfo{graphInput: r.inputs, graphOutput: r.outputs}[current.number]
		if replaced != nil {
			if values, ok := replaced[valueInfoNameOf(current.bytes)]; ok {
				for _, value := range values {
					encoded, err := value.marshal()
					if err != nil {
						return err
					}
					out = appendBytesField(out, current.number, encoded)
				}
				delete(replaced, valueInfoNameOf(current.bytes)) // an output listed twice is given once
				return nil
			}
		}
		out = appendField(out, current)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, value := range r.added {
		encoded, err := value.marshal()
		if err != nil {
			return nil, err
		}
		out = appendBytesField(out, graphInput, encoded)
	}
	for _, node := range r.last {
		encoded, err := node.marshal()
		if err != nil {
			return nil, err
		}
		out = appendBytesField(out, graphNode, encoded)
	}
	return out, nil
}

// valueInfoNameOf returns the name of a ValueInfoProto.
func valueInfoNameOf(valueInfo []byte) string {
	var name string
	_ = walk(valueInfo, func(current field) error {
		if current.number == valueInfoName && current.wireType == protowire.BytesType {
			name = string(current.bytes)
		}
		return nil
	})
	return name
}

// replaceGraph returns model with graph in place of its graph field(s),
// importing the default operator set when the model does not, for the
// nodes Adapt adds (version 7, the oldest ONNX Runtime loads).
func replaceGraph(model []byte, graph []byte) []byte {
	var out []byte
	written, hasDefault := false, false
	_ = walk(model, func(current field) error { // read once already by readModel
		switch current.number {
		case modelGraph:
			if !written {
				out = appendBytesField(out, modelGraph, graph)
				written = true
			}
			return nil
		case modelOpsetImport:
			domains := opsetDomains(current.bytes)
			hasDefault = hasDefault || len(domains) == 0 || slices.ContainsFunc(domains, func(domain string) bool { return domain == "" || domain == "ai.onnx" })
		}
		out = appendField(out, current)
		return nil
	})
	if !hasDefault {
		var opset []byte
		opset = appendStringField(opset, opsetIDDomain, "")
		opset = appendVarintField(opset, opsetIDVersion, 7)
		out = appendBytesField(out, modelOpsetImport, opset)
	}
	return out
}

// opsetDomains returns the domain fields of an OperatorSetIdProto.
func opsetDomains(opset []byte) []string {
	var domains []string
	_ = walk(opset, func(current field) error {
		if current.number == opsetIDDomain {
			domains = append(domains, string(current.bytes))
		}
		return nil
	})
	return domains
}

// appendField writes a field read by walk back as it came.
func appendField(out []byte, current field) []byte {
	switch current.wireType {
	case protowire.VarintType:
		return appendVarintField(out, current.number, current.varint)
	case protowire.BytesType:
		return appendBytesField(out, current.number, current.bytes)
	}
	return append(protowire.AppendTag(out, current.number, current.wireType), current.raw...)
}
