package activator

import (
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

func TestAgree(t *testing.T) {
	tensor := func(name string, data any) oip.Tensor {
		dt, _ := map[string]oip.Datatype{"class": oip.Bytes, "probabilities": oip.FP32, "value": oip.FP64}[name]
		shape := []int64{2}
		return oip.Tensor{Name: name, Datatype: dt, Shape: shape, Data: data}
	}
	labels := tensor("class", []string{"setosa", "virginica"})
	cases := []struct {
		name              string
		stable, candidate []oip.Tensor
		agree             bool
	}{
		{"the same labels, other probabilities", []oip.Tensor{labels, tensor("probabilities", []float32{0.9, 0.8})}, []oip.Tensor{labels, tensor("probabilities", []float32{0.6, 0.7})}, true},
		{"another label", []oip.Tensor{labels}, []oip.Tensor{tensor("class", []string{"setosa", "setosa"})}, false},
		{"no such output", []oip.Tensor{labels}, []oip.Tensor{tensor("probabilities", []float32{1, 2})}, false},
		{"values within 1 %", []oip.Tensor{tensor("value", []float64{100, 0})}, []oip.Tensor{tensor("value", []float64{100.9, 1e-7})}, true},
		{"a value 2 % off", []oip.Tensor{tensor("value", []float64{100, 0})}, []oip.Tensor{tensor("value", []float64{102, 0})}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.agree, agree(c.stable, c.candidate))
		})
	}
}
