package train

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// DriftBins is how many bins a Baseline splits each feature into: deciles.
const DriftBins = 10

// Baseline is how each input feature was distributed in the rows a model
// was trained on. It is stored with the model, so that the inputs the model
// sees later can be compared with it (Drift): a model answers well only on
// inputs like the ones it learned from.
type Baseline struct {
	Features []FeatureBaseline `json:"features"`
	// Rows counts the training rows it was taken from.
	Rows int `json:"rows"`
}

// FeatureBaseline is one feature's distribution: bins bounded by the
// training data's quantiles, and the share of training rows in each.
type FeatureBaseline struct {
	Name string `json:"name"`
	// Edges are the inclusive upper bounds of every bin but the last, rising.
	Edges []float64 `json:"edges"`
	// Shares are the training rows' share in each of the len(Edges)+1 bins.
	Shares []float64 `json:"shares"`
}

// NewBaseline takes the distribution of every feature of data: its deciles,
// fewer where a feature has fewer distinct values.
func NewBaseline(data Dataset) Baseline {
	baseline := Baseline{Rows: len(data.Features)}
	column := make([]float64, len(data.Features))
	for feature, name := range data.FeatureNames {
		for row, values := range data.Features {
			column[row] = values[feature]
		}
		slices.Sort(column)
		var edges []float64
		for bin := 1; bin < DriftBins && len(column) > 0; bin++ {
			edge := column[(bin*len(column)-1)/DriftBins]
			if len(edges) == 0 || edge > edges[len(edges)-1] {
				edges = append(edges, edge)
			}
		}
		if len(edges) > 0 && edges[len(edges)-1] == column[len(column)-1] {
			edges = edges[:len(edges)-1] // the last bin would be empty
		}
		counts := make([]int64, len(edges)+1)
		for _, value := range column {
			counts[bin(edges, value)]++
		}
		baseline.Features = append(baseline.Features, FeatureBaseline{Name: name, Edges: edges, Shares: shares(counts)})
	}
	return baseline
}

func bin(edges []float64, value float64) int { return sort.SearchFloat64s(edges, value) }

// shares turns counts into shares, each at least half a row's worth, so that
// an empty bin does not make the index infinite.
func shares(counts []int64) []float64 {
	var total int64
	for _, count := range counts {
		total += count
	}
	out := make([]float64, len(counts))
	for i, count := range counts {
		out[i] = (float64(count) + 0.5) / (float64(total) + 0.5*float64(len(counts)))
	}
	return out
}

// Histogram counts recent inputs into a Baseline's bins.
type Histogram struct {
	// Counts has one row of bin counts per feature of the Baseline.
	Counts [][]int64 `json:"counts"`
	Rows   int64     `json:"rows"`
}

// NewHistogram is an empty histogram with the baseline's bins.
func (b Baseline) NewHistogram() Histogram {
	h := Histogram{Counts: make([][]int64, len(b.Features))}
	for i, feature := range b.Features {
		h.Counts[i] = make([]int64, len(feature.Edges)+1)
	}
	return h
}

// Add counts one row of inputs, one value per feature in the baseline's order.
func (b Baseline) Add(h *Histogram, row []float32) error {
	if len(row) != len(b.Features) {
		return fmt.Errorf("drift: a row of %d values for %d features", len(row), len(b.Features))
	}
	for i, feature := range b.Features {
		h.Counts[i][bin(feature.Edges, float64(row[i]))]++
	}
	h.Rows++
	return nil
}

// FeatureDrift is how far one feature's recent inputs moved from the baseline.
type FeatureDrift struct {
	Name string `json:"name"`
	// PSI is the population stability index: under 0.1 no real change, 0.1
	// to 0.25 a moderate one, above 0.25 a large one.
	PSI float64 `json:"psi"`
}

// Drift is the population stability index of every feature of h against
// the baseline: the sum over bins of (recent − baseline) × ln(recent ÷
// baseline) shares.
func (b Baseline) Drift(h Histogram) []FeatureDrift {
	drift := make([]FeatureDrift, len(b.Features))
	for i, feature := range b.Features {
		recent := shares(h.Counts[i])
		psi := 0.0
		for bin, expected := range feature.Shares {
			psi += (recent[bin] - expected) * math.Log(recent[bin]/expected)
		}
		drift[i] = FeatureDrift{Name: feature.Name, PSI: psi}
	}
	return drift
}
