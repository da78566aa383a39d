package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// objective is the loss backward differentiates: mean cross-entropy plus
// l2/2 times the sum of squared weights.
func objective(net network, batch []float64, labels []int, l2 float64) float64 {
	activations := net.forward(batch, len(labels))
	loss := net.backward(activations, labels, 0, net.zeroLike())
	for _, layer := range net.layers {
		for _, weight := range layer.weights {
			loss += l2 / 2 * weight * weight
		}
	}
	return loss
}

func TestBackwardMatchesNumericalGradient(t *testing.T) {
	tests := []struct {
		name   string
		hidden int
	}{
		{name: "logistic regression", hidden: 0},
		{name: "hidden layer", hidden: 5},
	}
	const features, classes, rows, l2 = 3, 4, 6, 0.1
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			random := rand.New(rand.NewPCG(1, 2))
			net := newNetwork(features, test.hidden, classes, random)
			for _, parameter := range net.parameters() {
				for index := range parameter {
					parameter[index] = random.NormFloat64()
				}
			}
			batch := make([]float64, rows*features)
			for index := range batch {
				batch[index] = random.NormFloat64()
			}
			labels := []int{0, 1, 2, 3, 1, 2}

			gradients := net.zeroLike()
			net.backward(net.forward(batch, rows), labels, l2, gradients)

			const step = 1e-6
			analytic := gradients.parameters()
			for which, parameter := range net.parameters() {
				for index := range parameter {
					saved := parameter[index]
					parameter[index] = saved + step
					above := objective(net, batch, labels, l2)
					parameter[index] = saved - step
					below := objective(net, batch, labels, l2)
					parameter[index] = saved
					numerical := (above - below) / (2 * step)
					require.InDelta(t, numerical, analytic[which][index], 1e-6, "parameter %d[%d]", which, index)
				}
			}
		})
	}
}

func TestStratifiedSplit(t *testing.T) {
	tests := []struct {
		name      string
		counts    []int
		fraction  float64
		wantTests []int
	}{
		{name: "iris", counts: []int{50, 50, 50}, fraction: 0.2, wantTests: []int{10, 10, 10}},
		{name: "rounding", counts: []int{7, 3}, fraction: 0.25, wantTests: []int{2, 1}},
		{name: "a single row stays in training", counts: []int{1, 4}, fraction: 0.5, wantTests: []int{0, 2}},
		{name: "a class is never all held out", counts: []int{2, 2}, fraction: 0.9, wantTests: []int{1, 1}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var labels []int
			for class, count := range test.counts {
				for range count {
					labels = append(labels, class)
				}
			}
			random := rand.New(rand.NewPCG(1, splitStream))
			train, held := stratifiedSplit(labels, len(test.counts), test.fraction, random)
			require.Len(t, append(train, held...), len(labels))
			heldPerClass := make([]int, len(test.counts))
			for _, row := range held {
				heldPerClass[labels[row]]++
			}
			require.Equal(t, test.wantTests, heldPerClass)
			seen := map[int]bool{}
			for _, row := range append(train, held...) {
				require.False(t, seen[row], "row %d is in both parts", row)
				seen[row] = true
			}
		})
	}
}

func TestStandardization(t *testing.T) {
	features := [][]float64{{1, 5, 100}, {3, 5, 0}, {1000, 1000, 1000}}
	mean, scale := standardization(features, []int{0, 1})
	require.Equal(t, []float64{2, 5, 50}, mean)
	require.Equal(t, []float64{1, 1, 50}, scale) // the constant feature gets a scale of 1
}

func TestSoftmaxDoesNotOverflow(t *testing.T) {
	probabilities := make([]float64, 3)
	softmax([]float64{1000, 1000, -math.MaxFloat64}, probabilities)
	require.Equal(t, []float64{0.5, 0.5, 0}, probabilities)
}
