package oip_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"sluice.dev/sluice/events/oip"
)

func TestFloat64s(t *testing.T) {
	for _, data := range []any{[]float32{1.5, -2}, []float64{1.5, -2}, []float16.Float16{float16.Fromfloat32(1.5), float16.Fromfloat32(-2)}} {
		values, ok := oip.Tensor{Data: data}.Float64s()
		require.True(t, ok, "%T", data)
		require.Equal(t, []float64{1.5, -2}, values)
	}
	values, ok := oip.Tensor{Data: []uint8{7, 255}}.Float64s()
	require.True(t, ok)
	require.Equal(t, []float64{7, 255}, values)
	for _, data := range []any{[]string{"a"}, []bool{true}, []uint64{1}} {
		_, ok := oip.Tensor{Data: data}.Float64s()
		require.False(t, ok, "%T", data)
	}
}
