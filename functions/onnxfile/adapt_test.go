package onnxfile

import (
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

func TestAdapt(t *testing.T) {
	t.Run("a model that needs nothing is left as it is", func(t *testing.T) {
		model := modelOf(messageField(graphNode, stringField(nodeInput, "x"), stringField(nodeOutput, "y"), stringField(nodeOpType, "Relu")),
			tensorValue(graphInput, "x", elementFloat, "N", int64(1)), outputY)
		adapted, err := Adapt(model)
		require.NoError(t, err)
		require.Equal(t, model, adapted.Model)
		require.Equal(t, []Port{{Name: "x"}}, adapted.Inputs)
		require.Equal(t, []Port{{Name: "y"}}, adapted.Outputs)
		require.Empty(t, adapted.Placeholder)
	})
	t.Run("scalars, FP16 and unknown rank cross as FP32 tensors of rank one or more", func(t *testing.T) {
		unknownRank := messageField(graphOutput, stringField(valueInfoName, "z"),
			messageField(valueInfoType, messageField(typeTensor, varintField(tensorTypeElemType, int64(elementInt64)))))
		model := modelOf(
			messageField(graphNode, stringField(nodeInput, "x"), stringField(nodeOutput, "y"), stringField(nodeOpType, "Identity")),
			messageField(graphNode, stringField(nodeInput, "x"), stringField(nodeOutput, "z"), stringField(nodeOpType, "Shape")),
			tensorValue(graphInput, "x", elementFloat16), tensorValue(graphOutput, "y", elementFloat16), unknownRank)
		adapted, err := Adapt(model)
		require.NoError(t, err)
		require.Equal(t, []Port{{Name: "x:sluice.in", Scalar: true, FP16: true}}, adapted.Inputs)
		require.Equal(t, []Port{{Name: "y:sluice.out", Scalar: true, FP16: true}, {Name: "z:sluice.out", Shape: "z:sluice.shape"}}, adapted.Outputs)
		signature, err := ReadSignature(adapted.Model)
		require.NoError(t, err)
		require.Equal(t, oip.Signature{
			Inputs: []oip.TensorSpec{{Name: "x:sluice.in", Datatype: oip.FP32, Shape: []int64{1}}},
			Outputs: []oip.TensorSpec{
				{Name: "y:sluice.out", Datatype: oip.FP32, Shape: []int64{1}},
				{Name: "z:sluice.out", Datatype: oip.Int64, Shape: []int64{-1}},
				{Name: "z:sluice.shape", Datatype: oip.Int64, Shape: []int64{-1}},
			},
		}, signature)
		original, err := ReadSignature(model)
		require.NoError(t, err)
		require.Equal(t, original, adapted.Signature)
		require.Len(t, fieldsOf(t, onlyField(t, adapted.Model, modelGraph).bytes, graphNode), 11,
			"three constants; a reshape and a cast for x; the two nodes; a cast and a reshape for y; a reshape and a shape for z")
	})
	t.Run("a model without inputs gets a placeholder", func(t *testing.T) {
		model := modelOf(messageField(graphNode, stringField(nodeOutput, "y"), stringField(nodeOpType, "Constant")), outputY)
		adapted, err := Adapt(model)
		require.NoError(t, err)
		require.Equal(t, "sluice.placeholder", adapted.Placeholder)
		signature, err := ReadSignature(adapted.Model)
		require.NoError(t, err)
		require.Equal(t, []oip.TensorSpec{{Name: "sluice.placeholder", Datatype: oip.Bool, Shape: []int64{1}}}, signature.Inputs)
	})
}
