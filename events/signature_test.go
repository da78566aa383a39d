package events_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
)

func TestSignatureCheck(t *testing.T) {
	signature := events.Signature{
		Inputs:  []events.TensorSpec{{Name: "input", Datatype: events.FP32, Shape: []int64{-1, 4}}},
		Outputs: []events.TensorSpec{{Name: "probabilities", Datatype: events.FP32, Shape: []int64{-1, 3}}},
	}
	tensor := func(name string, datatype events.Datatype, shape ...int64) events.Tensor {
		return events.Tensor{Name: name, Datatype: datatype, Shape: shape}
	}
	cases := []struct {
		name      string
		req       events.InferenceRequest
		wantField string
		wantText  string
	}{
		{"fits", events.InferenceRequest{Inputs: []events.Tensor{tensor("input", events.FP32, 2, 4)}}, "", ""},
		{"any batch size", events.InferenceRequest{Inputs: []events.Tensor{tensor("input", events.FP32, 1000, 4)}}, "", ""},
		{"unknown input", events.InferenceRequest{Inputs: []events.Tensor{tensor("x", events.FP32, 2, 4)}}, "inputs[0].name", `no input "x"`},
		{"input twice", events.InferenceRequest{Inputs: []events.Tensor{tensor("input", events.FP32, 1, 4), tensor("input", events.FP32, 1, 4)}}, "inputs[1].name", "twice"},
		{"missing input", events.InferenceRequest{}, "inputs", `"input" is missing`},
		{"wrong datatype", events.InferenceRequest{Inputs: []events.Tensor{tensor("input", events.FP64, 2, 4)}}, "inputs[0].datatype", "takes FP32, got FP64"},
		{"wrong feature count", events.InferenceRequest{Inputs: []events.Tensor{tensor("input", events.FP32, 2, 3)}}, "inputs[0].shape", "[-1,4], got [2,3]"},
		{"wrong rank", events.InferenceRequest{Inputs: []events.Tensor{tensor("input", events.FP32, 8)}}, "inputs[0].shape", "got [8]"},
		{"unknown output", events.InferenceRequest{
			Inputs:  []events.Tensor{tensor("input", events.FP32, 2, 4)},
			Outputs: []events.RequestedOutput{{Name: "logits"}},
		}, "outputs[0].name", `no output "logits"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := signature.Check(&tc.req)
			if tc.wantField == "" {
				require.NoError(t, err)
				return
			}
			var field *events.FieldError
			require.True(t, errors.As(err, &field), "want a *FieldError, got %v", err)
			require.Equal(t, tc.wantField, field.Field)
			require.Contains(t, field.Problem, tc.wantText)
		})
	}
}
