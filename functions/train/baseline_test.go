package train_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions/train"
)

func TestBaselineBinsByQuantile(t *testing.T) {
	data := train.Dataset{FeatureNames: []string{"uniform", "constant", "two"}}
	for i := range 1000 {
		data.Features = append(data.Features, []float64{float64(i), 7, float64(i % 2)})
	}
	baseline := train.NewBaseline(data)
	require.Equal(t, 1000, baseline.Rows)
	uniform := baseline.Features[0]
	require.Equal(t, []float64{99, 199, 299, 399, 499, 599, 699, 799, 899}, uniform.Edges)
	for _, share := range uniform.Shares {
		require.InDelta(t, 0.1, share, 0.001)
	}
	require.Empty(t, baseline.Features[1].Edges, "one value: one bin")
	require.Equal(t, []float64{0}, baseline.Features[2].Edges, "two values: two bins")
	require.InDelta(t, 0.5, baseline.Features[2].Shares[0], 0.001)
}

func TestDrift(t *testing.T) {
	random := rand.New(rand.NewPCG(3, 4))
	normal := func(mean, deviation float64) []float32 {
		return []float32{float32(mean + deviation*random.NormFloat64())}
	}
	data := train.Dataset{FeatureNames: []string{"x"}}
	for range 5000 {
		data.Features = append(data.Features, []float64{float64(normal(0, 1)[0])})
	}
	baseline := train.NewBaseline(data)
	psi := func(rows int, mean, deviation float64) float64 {
		h := baseline.NewHistogram()
		for range rows {
			require.NoError(t, baseline.Add(&h, normal(mean, deviation)))
		}
		drift := baseline.Drift(h)
		require.Equal(t, "x", drift[0].Name)
		return drift[0].PSI
	}
	cases := []struct {
		name            string
		rows            int
		mean, deviation float64
		atLeast, atMost float64
	}{
		{name: "the same distribution", rows: 2000, mean: 0, deviation: 1, atMost: 0.02},
		{name: "a small sample of the same", rows: 100, mean: 0, deviation: 1, atMost: 0.25},
		{name: "shifted by half a deviation", rows: 2000, mean: 0.5, deviation: 1, atLeast: 0.2, atMost: 0.4},
		{name: "shifted by two", rows: 2000, mean: 2, deviation: 1, atLeast: 1},
		{name: "spread twice as wide", rows: 2000, mean: 0, deviation: 2, atLeast: 0.3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := psi(c.rows, c.mean, c.deviation)
			require.GreaterOrEqual(t, got, c.atLeast)
			if c.atMost > 0 {
				require.LessOrEqual(t, got, c.atMost)
			}
		})
	}
	h := baseline.NewHistogram()
	require.ErrorContains(t, baseline.Add(&h, []float32{1, 2}), "a row of 2 values for 1 features")
}
