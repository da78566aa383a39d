// Package onnxfile reads and writes ONNX model files without an ONNX
// library: it speaks the protobuf wire format of onnx.proto directly, with
// field numbers written out by hand below.
//
// Reading is limited to what the platform needs to know about a model
// before it runs one: the signature of its graph (ReadSignature) and its
// metadata (ReadMetadata). Writing covers the small graphs the trainer
// emits: nodes of the default or another operator set domain with int,
// ints, float, string and strings attributes, FP32 initializers, and
// tensor inputs and outputs (Model.Marshal).
package onnxfile

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"sluice.dev/sluice/events/oip"
)

// Defaults used by Model.Marshal when a version is left at zero. ONNX
// Runtime 1.30 loads both.
const (
	DefaultIRVersion    int64 = 8
	DefaultOpsetVersion int64 = 13
)

// MLDomain is the operator set domain of the ONNX-ML operators, such as
// LabelEncoder. A Model whose nodes use it lists it in ExtraOpsets.
const MLDomain = "ai.onnx.ml"

// ErrMalformed is wrapped by every error about bytes that are not a
// well-formed ONNX model: truncated, not protobuf, or missing the graph.
var ErrMalformed = errors.New("onnxfile: malformed model")

// ErrUnsupported is wrapped by errors about well-formed models that use a
// type the platform cannot serve, such as BFLOAT16 or a sequence input.
var ErrUnsupported = errors.New("onnxfile: unsupported")

// Field numbers of onnx.proto, message by message.
const (
	modelIRVersion       protowire.Number = 1
	modelProducerName    protowire.Number = 2
	modelProducerVersion protowire.Number = 3
	modelDocString       protowire.Number = 6
	modelGraph           protowire.Number = 7
	modelOpsetImport     protowire.Number = 8
	modelMetadataProps   protowire.Number = 14

	opsetIDDomain  protowire.Number = 1
	opsetIDVersion protowire.Number = 2

	entryKey   protowire.Number = 1
	entryValue protowire.Number = 2

	graphNode              protowire.Number = 1
	graphName              protowire.Number = 2
	graphInitializer       protowire.Number = 5
	graphInput             protowire.Number = 11
	graphOutput            protowire.Number = 12
	graphSparseInitializer protowire.Number = 15

	nodeInput     protowire.Number = 1
	nodeOutput    protowire.Number = 2
	nodeName      protowire.Number = 3
	nodeOpType    protowire.Number = 4
	nodeAttribute protowire.Number = 5
	nodeDomain    protowire.Number = 7

	attributeName    protowire.Number = 1
	attributeFloat   protowire.Number = 2
	attributeInt     protowire.Number = 3
	attributeString  protowire.Number = 4
	attributeInts    protowire.Number = 8
	attributeTensor  protowire.Number = 5
	attributeStrings protowire.Number = 9
	attributeType    protowire.Number = 20

	tensorDims     protowire.Number = 1
	tensorDataType protowire.Number = 2
	tensorName     protowire.Number = 8
	tensorRawData  protowire.Number = 9

	sparseTensorValues protowire.Number = 1

	valueInfoName protowire.Number = 1
	valueInfoType protowire.Number = 2

	typeTensor       protowire.Number = 1
	typeSequence     protowire.Number = 4
	typeMap          protowire.Number = 5
	typeSparseTensor protowire.Number = 8
	typeOptional     protowire.Number = 9

	tensorTypeElemType protowire.Number = 1
	tensorTypeShape    protowire.Number = 2

	shapeDim protowire.Number = 1

	dimensionValue protowire.Number = 1
	dimensionParam protowire.Number = 2
)

// AttributeProto.AttributeType values.
const (
	attributeKindFloat   = 1
	attributeKindInt     = 2
	attributeKindString  = 3
	attributeKindTensor  = 4
	attributeKindInts    = 7
	attributeKindStrings = 8
)

// elementType is a TensorProto.DataType value.
type elementType int32

// TensorProto.DataType values.
const (
	elementFloat      elementType = 1
	elementUint8      elementType = 2
	elementInt8       elementType = 3
	elementUint16     elementType = 4
	elementInt16      elementType = 5
	elementInt32      elementType = 6
	elementInt64      elementType = 7
	elementString     elementType = 8
	elementBool       elementType = 9
	elementFloat16    elementType = 10
	elementDouble     elementType = 11
	elementUint32     elementType = 12
	elementUint64     elementType = 13
	elementComplex64  elementType = 14
	elementComplex128 elementType = 15
	elementBfloat16   elementType = 16
)

// datatypeOfElement maps the ONNX element types the platform serves to
// Open Inference Protocol datatypes.
var datatypeOfElement = map[elementType]oip.Datatype{
	elementFloat:   oip.FP32,
	elementUint8:   oip.Uint8,
	elementInt8:    oip.Int8,
	elementUint16:  oip.Uint16,
	elementInt16:   oip.Int16,
	elementInt32:   oip.Int32,
	elementInt64:   oip.Int64,
	elementString:  oip.Bytes,
	elementBool:    oip.Bool,
	elementFloat16: oip.FP16,
	elementDouble:  oip.FP64,
	elementUint32:  oip.Uint32,
	elementUint64:  oip.Uint64,
}

// elementNames names the ONNX element types for error messages.
var elementNames = map[elementType]string{
	0:                 "UNDEFINED",
	elementFloat:      "FLOAT",
	elementUint8:      "UINT8",
	elementInt8:       "INT8",
	elementUint16:     "UINT16",
	elementInt16:      "INT16",
	elementInt32:      "INT32",
	elementInt64:      "INT64",
	elementString:     "STRING",
	elementBool:       "BOOL",
	elementFloat16:    "FLOAT16",
	elementDouble:     "DOUBLE",
	elementUint32:     "UINT32",
	elementUint64:     "UINT64",
	elementComplex64:  "COMPLEX64",
	elementComplex128: "COMPLEX128",
	elementBfloat16:   "BFLOAT16",
	17:                "FLOAT8E4M3FN",
	18:                "FLOAT8E4M3FNUZ",
	19:                "FLOAT8E5M2",
	20:                "FLOAT8E5M2FNUZ",
	21:                "UINT4",
	22:                "INT4",
	23:                "FLOAT4E2M1",
}

// String names the element type as onnx.proto does.
func (element elementType) String() string {
	if name, ok := elementNames[element]; ok {
		return fmt.Sprintf("%s (%d)", name, int32(element))
	}
	return fmt.Sprintf("unknown element type %d", int32(element))
}

// elementOfDatatype is the reverse of datatypeOfElement.
func elementOfDatatype(datatype oip.Datatype) (elementType, bool) {
	for element, candidate := range datatypeOfElement {
		if candidate == datatype {
			return element, true
		}
	}
	return 0, false
}
