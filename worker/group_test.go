package worker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

func jobOf(t *testing.T, name string, shape []int64) *job {
	t.Helper()
	elements := int64(1)
	for _, d := range shape {
		elements *= d
	}
	tensor, err := oip.NewTensor(name, shape, make([]float32, elements))
	require.NoError(t, err)
	return &job{req: &oip.InferenceRequest{Inputs: []oip.Tensor{tensor}}}
}

func TestGroupByShapeStacksWhatFitsTogether(t *testing.T) {
	defer func(limit int64) { maxStackedElements = limit }(maxStackedElements)
	maxStackedElements = 40
	a1, a2, a3 := jobOf(t, "x", []int64{2, 4}), jobOf(t, "x", []int64{3, 4}), jobOf(t, "x", []int64{6, 4})
	b := jobOf(t, "x", []int64{1, 5})
	scalar1, scalar2 := jobOf(t, "x", nil), jobOf(t, "x", nil)
	big := jobOf(t, "x", []int64{20, 4})
	groups := groupByShape([]*job{a1, b, scalar1, a2, scalar2, a3, big})
	require.Equal(t, [][]*job{
		{a1, a2}, // 8 + 12 elements; a3's 24 more would pass 40
		{b},
		{scalar1},
		{scalar2},
		{a3},
		{big}, // larger than the bound on its own: runs alone
	}, groups)
}
