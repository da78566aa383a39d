package activator

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"sluice.dev/sluice/activator/inference"
	"sluice.dev/sluice/events/oip"
)

// typedContents writes an input's typed contents as the little-endian bytes
// raw_input_contents would hold, which the binary tensor data extension
// holds too (BYTES elements each after its 4-byte length).
func typedContents(field string, input *inference.ModelInferRequest_InferInputTensor) ([]byte, error) {
	contents := input.GetContents()
	if contents == nil {
		return nil, &oip.FieldError{Field: field + ".contents", Problem: "missing: give contents or raw_input_contents"}
	}
	field += ".contents"
	switch oip.Datatype(input.GetDatatype()) {
	case oip.Bool:
		out := make([]byte, len(contents.GetBoolContents()))
		for i, v := range contents.GetBoolContents() {
			if v {
				out[i] = 1
			}
		}
		return out, nil
	case oip.Int8:
		return fixedInts(field+".int_contents", contents.GetIntContents(), 1, math.MinInt8, math.MaxInt8)
	case oip.Int16:
		return fixedInts(field+".int_contents", contents.GetIntContents(), 2, math.MinInt16, math.MaxInt16)
	case oip.Int32:
		return fixedInts(field+".int_contents", contents.GetIntContents(), 4, math.MinInt32, math.MaxInt32)
	case oip.Int64:
		return fixedInts(field+".int64_contents", contents.GetInt64Contents(), 8, math.MinInt64, math.MaxInt64)
	case oip.Uint8:
		return fixedUints(field+".uint_contents", contents.GetUintContents(), 1, math.MaxUint8)
	case oip.Uint16:
		return fixedUints(field+".uint_contents", contents.GetUintContents(), 2, math.MaxUint16)
	case oip.Uint32:
		return fixedUints(field+".uint_contents", contents.GetUintContents(), 4, math.MaxUint32)
	case oip.Uint64:
		return fixedUints(field+".uint64_contents", contents.GetUint64Contents(), 8, math.MaxUint64)
	case oip.FP32:
		out := make([]byte, 0, 4*len(contents.GetFp32Contents()))
		for _, v := range contents.GetFp32Contents() {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
		return out, nil
	case oip.FP64:
		out := make([]byte, 0, 8*len(contents.GetFp64Contents()))
		for _, v := range contents.GetFp64Contents() {
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(v))
		}
		return out, nil
	case oip.Bytes:
		var out []byte
		for _, v := range contents.GetBytesContents() {
			out = append(binary.LittleEndian.AppendUint32(out, uint32(len(v))), v...)
		}
		return out, nil
	case oip.FP16:
		return nil, &oip.FieldError{Field: field, Problem: "FP16 has no typed contents: send it in raw_input_contents"}
	}
	return nil, &oip.FieldError{Field: field[:len(field)-len(".contents")] + ".datatype", Problem: fmt.Sprintf("unknown %q", input.GetDatatype())}
}

// fixedInts writes signed integers of size bytes, each within [low, high].
func fixedInts[T int32 | int64](field string, values []T, size int, low, high int64) ([]byte, error) {
	out := make([]byte, 0, size*len(values))
	for i, v := range values {
		if int64(v) < low || int64(v) > high {
			return nil, &oip.FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Problem: fmt.Sprintf("%d is out of range", v)}
		}
		out = binary.LittleEndian.AppendUint64(out, uint64(v))[:len(out)+size]
	}
	return out, nil
}

// fixedUints writes unsigned integers of size bytes, each at most high.
func fixedUints[T uint32 | uint64](field string, values []T, size int, high uint64) ([]byte, error) {
	out := make([]byte, 0, size*len(values))
	for i, v := range values {
		if uint64(v) > high {
			return nil, &oip.FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Problem: fmt.Sprintf("%d is out of range", v)}
		}
		out = binary.LittleEndian.AppendUint64(out, uint64(v))[:len(out)+size]
	}
	return out, nil
}

// grpcResponse reads a worker's answer in the binary tensor data extension,
// every output in binary, as a ModelInferResponse with raw_output_contents.
func grpcResponse(body []byte, headerLength int) (*inference.ModelInferResponse, error) {
	if headerLength <= 0 || headerLength > len(body) {
		return nil, fmt.Errorf("read the worker's answer: not in binary (header length %d of %d bytes)", headerLength, len(body))
	}
	var head struct {
		ModelName    string         `json:"model_name"`
		ModelVersion string         `json:"model_version"`
		ID           string         `json:"id"`
		Parameters   map[string]any `json:"parameters"`
		Outputs      []struct {
			Name       string         `json:"name"`
			Datatype   string         `json:"datatype"`
			Shape      []int64        `json:"shape"`
			Parameters map[string]any `json:"parameters"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body[:headerLength], &head); err != nil {
		return nil, fmt.Errorf("read the worker's answer: %v", err)
	}
	resp := &inference.ModelInferResponse{ModelName: head.ModelName, ModelVersion: head.ModelVersion, Id: head.ID, Parameters: toInferParameters(head.Parameters)}
	tail := body[headerLength:]
	for _, output := range head.Outputs {
		size, ok := output.Parameters["binary_data_size"].(float64)
		if !ok || size < 0 || int(size) > len(tail) {
			return nil, fmt.Errorf("read the worker's answer: output %q is not in binary", output.Name)
		}
		delete(output.Parameters, "binary_data_size")
		resp.Outputs = append(resp.Outputs, &inference.ModelInferResponse_InferOutputTensor{
			Name: output.Name, Datatype: output.Datatype, Shape: output.Shape, Parameters: toInferParameters(output.Parameters),
		})
		resp.RawOutputContents = append(resp.RawOutputContents, tail[:int(size)])
		tail = tail[int(size):]
	}
	return resp, nil
}

// toInferParameters writes JSON parameters as gRPC ones: booleans, integers
// and strings as such, anything else as its JSON text.
func toInferParameters(parameters map[string]any) map[string]*inference.InferParameter {
	if len(parameters) == 0 {
		return nil
	}
	out := make(map[string]*inference.InferParameter, len(parameters))
	for name, value := range parameters {
		switch v := value.(type) {
		case bool:
			out[name] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: v}}
		case float64:
			if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
				out[name] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: int64(v)}}
				continue
			}
			out[name] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: fmt.Sprint(v)}}
		case string:
			out[name] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: v}}
		default:
			text, _ := json.Marshal(v)
			out[name] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: string(text)}}
		}
	}
	return out
}
