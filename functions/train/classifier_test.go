package train_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/functions/train"
)

// fitIris trains on Iris with the given number of hidden units.
func fitIris(t *testing.T, hidden int) (*train.Classifier, train.Dataset) {
	t.Helper()
	data := readIris(t)
	cfg := train.DefaultConfig()
	cfg.HiddenUnits = hidden
	classifier, _, err := train.Fit(context.Background(), data, cfg)
	require.NoError(t, err)
	return classifier, data
}

func TestClassifierONNX(t *testing.T) {
	tests := []struct {
		name   string
		hidden int
	}{
		{name: "hidden layer", hidden: 16},
		{name: "logistic regression", hidden: 0},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			classifier, data := fitIris(t, test.hidden)
			model, err := classifier.ONNX()
			require.NoError(t, err)

			signature, err := onnxfile.ReadSignature(model)
			require.NoError(t, err)
			require.Equal(t, oip.Signature{
				Inputs: []oip.TensorSpec{{Name: train.InputName, Datatype: oip.FP32, Shape: []int64{-1, 4}}},
				Outputs: []oip.TensorSpec{
					{Name: train.ProbabilitiesName, Datatype: oip.FP32, Shape: []int64{-1, 3}},
					{Name: train.LabelName, Datatype: oip.Int64, Shape: []int64{-1}},
					{Name: train.ClassName, Datatype: oip.Bytes, Shape: []int64{-1}},
				},
			}, signature)

			metadata, err := onnxfile.ReadMetadata(model)
			require.NoError(t, err)
			var classes, features []string
			require.NoError(t, json.Unmarshal([]byte(metadata[train.MetadataClasses]), &classes))
			require.NoError(t, json.Unmarshal([]byte(metadata[train.MetadataFeatures]), &features))
			require.Equal(t, data.Classes, classes)
			require.Equal(t, data.FeatureNames, features)
		})
	}
}

func TestClassifierPredictProba(t *testing.T) {
	classifier, _ := fitIris(t, 16)
	tests := []struct {
		name     string
		features []float32
		class    string
	}{
		{name: "setosa", features: []float32{5.1, 3.5, 1.4, 0.2}, class: "setosa"},
		{name: "versicolor", features: []float32{6.4, 3.2, 4.5, 1.5}, class: "versicolor"},
		{name: "virginica", features: []float32{6.3, 3.3, 6.0, 2.5}, class: "virginica"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			probabilities := classifier.PredictProba(test.features)
			require.Len(t, probabilities, 3)
			sum, best := float32(0), 0
			for class, probability := range probabilities {
				require.GreaterOrEqual(t, probability, float32(0))
				sum += probability
				if probability > probabilities[best] {
					best = class
				}
			}
			require.InDelta(t, 1, sum, 1e-5)
			require.Equal(t, test.class, classifier.Classes()[best])
			require.Greater(t, probabilities[best], float32(0.5))
		})
	}
	require.Nil(t, classifier.PredictProba([]float32{1, 2, 3}))
	require.Nil(t, classifier.PredictProba(nil))
}

func TestClassifierNamesAreCopies(t *testing.T) {
	classifier, _ := fitIris(t, 0)
	classifier.Classes()[0] = "changed"
	classifier.Features()[0] = "changed"
	require.Equal(t, "setosa", classifier.Classes()[0])
	require.Equal(t, "sepal_length", classifier.Features()[0])
}
