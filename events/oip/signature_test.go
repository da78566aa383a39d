package oip_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

func TestSignatureCheck(t *testing.T) {
	signature := oip.Signature{
		Inputs:  []oip.TensorSpec{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
		Outputs: []oip.TensorSpec{{Name: "probabilities", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
	}
	tensor := func(name string, datatype oip.Datatype, shape ...int64) oip.Tensor {
		return oip.Tensor{Name: name, Datatype: datatype, Shape: shape}
	}
	cases := []struct {
		name      string
		req       oip.InferenceRequest
		wantField string
		wantText  string
	}{
		{"fits", oip.InferenceRequest{Inputs: []oip.Tensor{tensor("input", oip.FP32, 2, 4)}}, "", ""},
		{"any batch size", oip.InferenceRequest{Inputs: []oip.Tensor{tensor("input", oip.FP32, 1000, 4)}}, "", ""},
		{"unknown input", oip.InferenceRequest{Inputs: []oip.Tensor{tensor("x", oip.FP32, 2, 4)}}, "inputs[0].name", `no input "x"`},
		{"input twice", oip.InferenceRequest{Inputs: []oip.Tensor{tensor("input", oip.FP32, 1, 4), tensor("input", oip.FP32, 1, 4)}}, "inputs[1].name", "twice"},
		{"missing input", oip.InferenceRequest{}, "inputs", `"input" is missing`},
		{"wrong datatype", oip.InferenceRequest{Inputs: []oip.Tensor{tensor("input", oip.FP64, 2, 4)}}, "inputs[0].datatype", "takes FP32, got FP64"},
		{"wrong feature count", oip.InferenceRequest{Inputs: []oip.Tensor{tensor("input", oip.FP32, 2, 3)}}, "inputs[0].shape", "[-1,4], got [2,3]"},
		{"wrong rank", oip.InferenceRequest{Inputs: []oip.Tensor{tensor("input", oip.FP32, 8)}}, "inputs[0].shape", "got [8]"},
		{"unknown output", oip.InferenceRequest{
			Inputs:  []oip.Tensor{tensor("input", oip.FP32, 2, 4)},
			Outputs: []oip.RequestedOutput{{Name: "logits"}},
		}, "outputs[0].name", `no output "logits"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := signature.Check(&tc.req)
			if tc.wantField == "" {
				require.NoError(t, err)
				return
			}
			var field *oip.FieldError
			require.True(t, errors.As(err, &field), "want a *FieldError, got %v", err)
			require.Equal(t, tc.wantField, field.Field)
			require.Contains(t, field.Problem, tc.wantText)
		})
	}
}
