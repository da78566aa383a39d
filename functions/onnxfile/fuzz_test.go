package onnxfile

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

func FuzzReadSignature(f *testing.F) {
	model, err := Model{
		Metadata: map[string]string{"classes": `["a","b"]`},
		Graph: Graph{
			Nodes: []Node{{
				OpType: "Softmax", Inputs: []string{"x"}, Outputs: []string{"y"},
				Attributes: []Attribute{IntAttribute("axis", 1), IntsAttribute("unused", 1, 2), FloatAttribute("f", 0.5), StringsAttribute("names", "a", "b")},
			}},
			Initializers: []Initializer{{Name: "W", Dims: []int64{2}, Values: []float32{1, 2}}},
			Inputs: []ValueInfo{
				{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 2}},
				{Name: "W", Datatype: oip.FP32, Shape: []int64{2}},
			},
			Outputs: []ValueInfo{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, 2}}},
		},
	}.Marshal()
	require.NoError(f, err)
	f.Add(model)
	f.Add(model[:len(model)/2])
	f.Add([]byte{})
	f.Add([]byte("hello"))
	f.Add(modelOf(tensorValue(graphInput, "x", elementBfloat16, "N", nil), outputY))
	f.Fuzz(func(t *testing.T, model []byte) {
		signature, err := ReadSignature(model)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnsupported), "error %v wraps neither sentinel", err)
			return
		}
		require.NotEmpty(t, signature.Outputs)
		for _, spec := range append(signature.Inputs, signature.Outputs...) {
			require.NotEmpty(t, spec.Name)
			require.NotEmpty(t, spec.Datatype)
			for _, size := range spec.Shape {
				require.GreaterOrEqual(t, size, int64(-1))
			}
		}
		_, err = ReadMetadata(model)
		require.NoError(t, err)
	})
}
