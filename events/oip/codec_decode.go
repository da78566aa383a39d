package oip

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// decoder reads one request or response body. It keeps nothing after the
// call that made it returns. tail is nil for a body that is all JSON; for a
// body in the binary tensor data extension it holds the bytes after the JSON
// inference header, which tensors with parameters.binary_data_size take in
// turn (codec_binary.go).
type decoder struct {
	scan   scanner
	limits Limits
	tail   *binaryTail
}

// DecodeInferenceRequest reads an Open Inference Protocol v2 REST infer
// request. Tensor data may be flat or nested to match the shape, and may come
// before or after datatype and shape; each tensor's shape is checked against
// limits before its data is allocated. Unknown members are ignored, as the
// protocol allows extensions; a member given twice is an error. Every error is
// a *FieldError naming the field, such as inputs[0].data[5].
func DecodeInferenceRequest(body []byte, limits Limits) (*InferenceRequest, error) {
	d := decoder{scan: scanner{buf: body}, limits: limits.withDefaults()}
	return d.request()
}

// request reads the scanner's buffer as an infer request.
func (d *decoder) request() (*InferenceRequest, error) {
	r := &InferenceRequest{}
	seen := memberSet{names: requestMembers}
	err := d.document(func(key []byte) error {
		var err error
		switch name := string(key); {
		case !seen.add(name):
			return &FieldError{Field: name, Problem: "appears twice"}
		case name == "id":
			r.ID, err = d.scan.stringValue(fieldPath{list: "id", index: -1})
		case name == "parameters":
			r.Parameters, err = d.parameters(fieldPath{list: "parameters", index: -1})
		case name == "inputs":
			r.Inputs, err = d.tensors("inputs")
		case name == "outputs":
			r.Outputs, err = d.requestedOutputs()
		default:
			err = d.scan.skipValue()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !seen.has("inputs") {
		return nil, &FieldError{Field: "inputs", Problem: "missing"}
	}
	return r, nil
}

// DecodeInferenceResponse reads an Open Inference Protocol v2 REST infer
// response, as DecodeInferenceRequest reads a request. model_name and outputs
// are required.
func DecodeInferenceResponse(body []byte, limits Limits) (*InferenceResponse, error) {
	d := decoder{scan: scanner{buf: body}, limits: limits.withDefaults()}
	return d.response()
}

// response reads the scanner's buffer as an infer response.
func (d *decoder) response() (*InferenceResponse, error) {
	r := &InferenceResponse{}
	seen := memberSet{names: responseMembers}
	err := d.document(func(key []byte) error {
		var err error
		switch name := string(key); {
		case !seen.add(name):
			return &FieldError{Field: name, Problem: "appears twice"}
		case name == "model_name":
			r.ModelName, err = d.scan.stringValue(fieldPath{list: name, index: -1})
		case name == "model_version":
			r.ModelVersion, err = d.scan.stringValue(fieldPath{list: name, index: -1})
		case name == "id":
			r.ID, err = d.scan.stringValue(fieldPath{list: name, index: -1})
		case name == "parameters":
			r.Parameters, err = d.parameters(fieldPath{list: name, index: -1})
		case name == "outputs":
			r.Outputs, err = d.tensors("outputs")
		default:
			err = d.scan.skipValue()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, required := range []string{"model_name", "outputs"} {
		if !seen.has(required) {
			return nil, &FieldError{Field: required, Problem: "missing"}
		}
	}
	return r, nil
}

// The members each object of a body may have; any others are ignored.
var (
	requestMembers         = []string{"id", "parameters", "inputs", "outputs"}
	responseMembers        = []string{"model_name", "model_version", "id", "parameters", "outputs"}
	requestedOutputMembers = []string{"name", "parameters"}
	tensorMembers          = []string{"name", "shape", "datatype", "parameters", "data"}
)

// memberSet records which of an object's known member names (at most 8) it
// has had, to find members given twice or missing.
type memberSet struct {
	bits  uint8
	names []string
}

// add records name when it is known and reports false when it already was.
// Unknown names are always accepted.
func (m *memberSet) add(name string) bool {
	for i, candidate := range m.names {
		if candidate == name {
			bit := uint8(1) << i
			fresh := m.bits&bit == 0
			m.bits |= bit
			return fresh
		}
	}
	return true
}

// has reports whether name has been recorded.
func (m *memberSet) has(name string) bool {
	for i, candidate := range m.names {
		if candidate == name {
			return m.bits&(uint8(1)<<i) != 0
		}
	}
	return false
}

// document reads the body as one JSON object.
func (d *decoder) document(member func(key []byte) error) error {
	if d.scan.peek() != '{' {
		return d.scan.typeError(bodyPath, "a JSON object")
	}
	if err := d.scan.object(member); err != nil {
		return err
	}
	return d.scan.end()
}

// parameters reads a parameters object, or null, with encoding/json.
func (d *decoder) parameters(field fieldPath) (map[string]any, error) {
	switch d.scan.peek() {
	case 'n':
		return nil, d.scan.literal("null")
	case '{':
	default:
		return nil, d.scan.typeError(field, "an object")
	}
	start := d.scan.pos
	if err := d.scan.skipValue(); err != nil {
		return nil, err
	}
	var parameters map[string]any
	if err := json.Unmarshal(d.scan.buf[start:d.scan.pos], &parameters); err != nil {
		return nil, &FieldError{Field: field.String(), Problem: err.Error()}
	}
	return parameters, nil
}

// tensors reads the array of tensors named list: inputs or outputs.
func (d *decoder) tensors(list string) ([]Tensor, error) {
	if d.scan.peek() != '[' {
		return nil, d.scan.typeError(fieldPath{list: list, index: -1}, "an array of tensors")
	}
	var tensors []Tensor
	err := d.scan.array(func(i int) error {
		if i >= d.limits.MaxTensors {
			return &FieldError{Field: list, Problem: fmt.Sprintf("more than the limit of %d tensors", d.limits.MaxTensors)}
		}
		path := fieldPath{list: list, index: i}
		t, err := d.tensor(path)
		if err != nil {
			return err
		}
		for j := range tensors {
			if tensors[j].Name == t.Name {
				return &FieldError{Field: path.with("name").String(), Problem: fmt.Sprintf("%q is also the name of %s[%d]", t.Name, list, j)}
			}
		}
		tensors = append(tensors, t)
		return nil
	})
	return tensors, err
}

// requestedOutputs reads the outputs of a request, or null.
func (d *decoder) requestedOutputs() ([]RequestedOutput, error) {
	switch d.scan.peek() {
	case 'n':
		return nil, d.scan.literal("null")
	case '[':
	default:
		return nil, d.scan.typeError(fieldPath{list: "outputs", index: -1}, "an array")
	}
	var outputs []RequestedOutput
	err := d.scan.array(func(i int) error {
		if i >= d.limits.MaxTensors {
			return &FieldError{Field: "outputs", Problem: fmt.Sprintf("more than the limit of %d requested outputs", d.limits.MaxTensors)}
		}
		output, err := d.requestedOutput(fieldPath{list: "outputs", index: i})
		outputs = append(outputs, output)
		return err
	})
	return outputs, err
}

func (d *decoder) requestedOutput(path fieldPath) (RequestedOutput, error) {
	var output RequestedOutput
	if d.scan.peek() != '{' {
		return output, d.scan.typeError(path, "an object")
	}
	seen := memberSet{names: requestedOutputMembers}
	err := d.scan.object(func(key []byte) error {
		var err error
		switch name := string(key); {
		case !seen.add(name):
			return &FieldError{Field: path.with(name).String(), Problem: "appears twice"}
		case name == "name":
			output.Name, err = d.scan.stringValue(path.with(name))
		case name == "parameters":
			output.Parameters, err = d.parameters(path.with(name))
		default:
			err = d.scan.skipValue()
		}
		return err
	})
	switch {
	case err != nil:
		return output, err
	case !seen.has("name"):
		return output, &FieldError{Field: path.with("name").String(), Problem: "missing"}
	case output.Name == "":
		return output, &FieldError{Field: path.with("name").String(), Problem: "empty"}
	}
	return output, nil
}

// tensorDecoder reads one tensor object. dataAt is the offset of data that
// came before datatype or shape and so was skipped, to be read at the end;
// it is -1 otherwise.
type tensorDecoder struct {
	d      *decoder
	path   fieldPath
	tensor Tensor
	seen   memberSet
	dataAt int
}

func (d *decoder) tensor(path fieldPath) (Tensor, error) {
	if d.scan.peek() != '{' {
		return Tensor{}, d.scan.typeError(path, "a tensor object")
	}
	td := &tensorDecoder{d: d, path: path, seen: memberSet{names: tensorMembers}, dataAt: -1}
	if err := d.scan.object(td.member); err != nil {
		return Tensor{}, err
	}
	return td.finish()
}

func (td *tensorDecoder) member(key []byte) error {
	s := &td.d.scan
	var err error
	switch name := string(key); {
	case !td.seen.add(name):
		return &FieldError{Field: td.path.with(name).String(), Problem: "appears twice"}
	case name == "name":
		td.tensor.Name, err = s.stringValue(td.path.with("name"))
	case name == "shape":
		td.tensor.Shape, err = td.shape()
	case name == "datatype":
		var datatype string
		datatype, err = s.stringValue(td.path.with("datatype"))
		td.tensor.Datatype = Datatype(datatype)
	case name == "parameters":
		td.tensor.Parameters, err = td.d.parameters(td.path.with("parameters"))
	case name == "data" && td.seen.has("shape") && td.seen.has("datatype"):
		err = td.data(s)
	case name == "data":
		td.dataAt = s.pos
		err = s.skipValue()
	default:
		err = s.skipValue()
	}
	return err
}

// shape reads an array of integer dimensions. Their signs and product are
// checked with the datatype, before the data is read.
func (td *tensorDecoder) shape() ([]int64, error) {
	s := &td.d.scan
	field := td.path.with("shape")
	if s.peek() != '[' {
		return nil, s.typeError(field, "an array of integers")
	}
	shape := make([]int64, 0, 4)
	err := s.array(func(i int) error {
		if c := s.peek(); c != '-' && (c < '0' || c > '9') {
			return s.typeError(field, "an array of integers")
		}
		token, integer, err := s.scanNumber()
		if err != nil {
			return err
		}
		dim, err := strconv.ParseInt(string(token), 10, 64)
		if !integer || err != nil {
			return &FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Problem: fmt.Sprintf("%s is not an int64", shown(token))}
		}
		shape = append(shape, dim)
		return nil
	})
	return shape, err
}

// data checks datatype and shape, then reads the data array at the
// scanner's position.
func (td *tensorDecoder) data(s *scanner) error {
	kind := kindOf(td.tensor.Datatype)
	if kind == nil {
		return unknownDatatype(td.path.with("datatype").String(), td.tensor.Datatype)
	}
	elements, fieldErr := shapeElements(td.tensor.Shape, td.d.limits.MaxElements)
	if fieldErr != nil {
		return fieldErr.under(td.path.with("shape").String())
	}
	data, err := kind.decode(s, td.path, td.tensor.Shape, elements)
	if err != nil {
		return err
	}
	td.tensor.Data = data
	return nil
}

// finish checks that every required member came and reads data that came
// before datatype or shape.
func (td *tensorDecoder) finish() (Tensor, error) {
	if td.d.tail != nil && td.binary() {
		return td.finishBinary()
	}
	for _, required := range []string{"name", "datatype", "shape", "data"} {
		if !td.seen.has(required) {
			return Tensor{}, td.missing(required)
		}
	}
	if td.tensor.Name == "" {
		return Tensor{}, &FieldError{Field: td.path.with("name").String(), Problem: "empty"}
	}
	if td.dataAt >= 0 {
		deferred := scanner{buf: td.d.scan.buf, pos: td.dataAt}
		if err := td.data(&deferred); err != nil {
			return Tensor{}, err
		}
	}
	return td.tensor, nil
}
