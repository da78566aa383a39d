package train_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions/train"
)

func TestFitIris(t *testing.T) {
	logistic := train.DefaultConfig()
	logistic.HiddenUnits = 0
	logistic.LearningRate = 0.05
	tests := []struct {
		name string
		cfg  train.Config
	}{
		{name: "default (hidden layer)", cfg: train.DefaultConfig()},
		{name: "logistic regression", cfg: logistic},
	}
	data := readIris(t)
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			classifier, report, err := train.Fit(context.Background(), data, test.cfg)
			require.NoError(t, err)
			t.Logf("train accuracy %.3f, test accuracy %.3f, loss %.4f, %v", report.TrainAccuracy, report.TestAccuracy, report.TrainLoss, report.Duration)
			require.GreaterOrEqual(t, report.TestAccuracy, 0.9)
			require.GreaterOrEqual(t, report.TrainAccuracy, 0.9)
			require.Less(t, report.Duration, time.Second)
			require.Equal(t, 150, report.Rows)
			require.Equal(t, 120, report.TrainRows)
			require.Equal(t, 30, report.TestRows)
			require.Equal(t, 4, report.Features)
			require.Equal(t, 3, report.Classes)
			require.Equal(t, test.cfg.Epochs, report.Epochs)
			require.Equal(t, data.Classes, classifier.Classes())
			require.Equal(t, data.FeatureNames, classifier.Features())
		})
	}
}

func TestFitIsDeterministicForASeed(t *testing.T) {
	data := readIris(t)
	fit := func(seed uint64) ([]byte, train.Report) {
		t.Helper()
		cfg := train.DefaultConfig()
		cfg.Seed = seed
		classifier, report, err := train.Fit(context.Background(), data, cfg)
		require.NoError(t, err)
		model, err := classifier.ONNX()
		require.NoError(t, err)
		report.Duration = 0
		return model, report
	}
	firstModel, firstReport := fit(7)
	againModel, againReport := fit(7)
	require.Equal(t, firstReport, againReport)
	require.Equal(t, firstModel, againModel)

	otherModel, _ := fit(8)
	require.NotEqual(t, firstModel, otherModel)
}

// quadrants is an XOR-shaped problem: points around (±1, ±1), labelled by
// whether x and y have the same sign. No linear model separates it.
func quadrants(rows int) train.Dataset {
	random := rand.New(rand.NewPCG(3, 4))
	data := train.Dataset{FeatureNames: []string{"x", "y"}, Classes: []string{"different", "same"}}
	for row := range rows {
		x := float64(row%2*2-1) + random.NormFloat64()*0.2
		y := float64(row/2%2*2-1) + random.NormFloat64()*0.2
		label := 0
		if x*y > 0 {
			label = 1
		}
		data.Features = append(data.Features, []float64{x, y})
		data.Labels = append(data.Labels, label)
	}
	return data
}

func TestFitHiddenLayerLearnsWhatALinearModelCannot(t *testing.T) {
	data := quadrants(200)
	linear := train.DefaultConfig()
	linear.HiddenUnits = 0
	_, linearReport, err := train.Fit(context.Background(), data, linear)
	require.NoError(t, err)
	require.Less(t, linearReport.TestAccuracy, 0.8)

	_, hiddenReport, err := train.Fit(context.Background(), data, train.DefaultConfig())
	require.NoError(t, err)
	require.GreaterOrEqual(t, hiddenReport.TestAccuracy, 0.95)
}

func TestFitErrors(t *testing.T) {
	twoClasses := train.Dataset{
		FeatureNames: []string{"a"},
		Classes:      []string{"x", "y"},
		Features:     [][]float64{{1}, {2}, {3}, {4}, {5}, {6}},
		Labels:       []int{0, 0, 0, 1, 1, 1},
	}
	badConfig := train.DefaultConfig()
	badConfig.Epochs = 0
	tests := []struct {
		name string
		data train.Dataset
		cfg  train.Config
		want string
	}{
		{name: "bad config", data: twoClasses, cfg: badConfig, want: "fit: config: epochs 0"},
		{
			name: "one class",
			data: train.Dataset{FeatureNames: []string{"a"}, Classes: []string{"x"}, Features: [][]float64{{1}, {2}}, Labels: []int{0, 0}},
			cfg:  train.DefaultConfig(), want: "1 class(es), want at least 2",
		},
		{
			name: "no features",
			data: train.Dataset{Classes: []string{"x", "y"}, Features: [][]float64{{}, {}}, Labels: []int{0, 1}},
			cfg:  train.DefaultConfig(), want: "the dataset has no features",
		},
		{
			name: "too few rows to hold any out",
			data: train.Dataset{FeatureNames: []string{"a"}, Classes: []string{"x", "y"}, Features: [][]float64{{1}, {2}}, Labels: []int{0, 1}},
			cfg:  train.DefaultConfig(), want: "2 rows are too few to hold out 0.2 of any class",
		},
		{
			name: "inconsistent dataset",
			data: train.Dataset{FeatureNames: []string{"a"}, Classes: []string{"x", "y"}, Features: [][]float64{{1}}, Labels: []int{0, 1}},
			cfg:  train.DefaultConfig(), want: "1 feature rows and 2 labels",
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, _, err := train.Fit(context.Background(), test.data, test.cfg)
			require.ErrorContains(t, err, test.want)
		})
	}
}

func TestFitStopsWhenTheContextIsDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := train.Fit(ctx, readIris(t), train.DefaultConfig())
	require.ErrorIs(t, err, context.Canceled)
}

func TestFitReportsDivergence(t *testing.T) {
	data := train.Dataset{
		FeatureNames: []string{"a"},
		Classes:      []string{"x", "y"},
		Features:     [][]float64{{1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}},
		Labels:       []int{0, 0, 0, 0, 0, 1, 1, 1, 1, 1},
	}
	cfg := train.DefaultConfig()
	cfg.LearningRate = math.MaxFloat64
	_, _, err := train.Fit(context.Background(), data, cfg)
	require.ErrorContains(t, err, "the loss diverged")
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(cfg *train.Config)
		want string
	}{
		{name: "default", edit: func(*train.Config) {}},
		{name: "logistic regression", edit: func(cfg *train.Config) { cfg.HiddenUnits = 0 }},
		{name: "negative hidden units", edit: func(cfg *train.Config) { cfg.HiddenUnits = -1 }, want: "hidden units -1"},
		{name: "huge hidden layer", edit: func(cfg *train.Config) { cfg.HiddenUnits = 1 << 20 }, want: "hidden units 1048576"},
		{name: "no epochs", edit: func(cfg *train.Config) { cfg.Epochs = 0 }, want: "epochs 0"},
		{name: "zero learning rate", edit: func(cfg *train.Config) { cfg.LearningRate = 0 }, want: "learning rate 0"},
		{name: "NaN learning rate", edit: func(cfg *train.Config) { cfg.LearningRate = math.NaN() }, want: "learning rate NaN"},
		{name: "infinite learning rate", edit: func(cfg *train.Config) { cfg.LearningRate = math.Inf(1) }, want: "learning rate +Inf"},
		{name: "negative l2", edit: func(cfg *train.Config) { cfg.L2 = -0.1 }, want: "l2 -0.1"},
		{name: "no test rows", edit: func(cfg *train.Config) { cfg.TestFraction = 0 }, want: "test fraction 0"},
		{name: "all test rows", edit: func(cfg *train.Config) { cfg.TestFraction = 1 }, want: "test fraction 1"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			cfg := train.DefaultConfig()
			test.edit(&cfg)
			err := cfg.Validate()
			if test.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, test.want)
		})
	}
}
