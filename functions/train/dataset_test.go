package train_test

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions/train"
)

// readIris loads the demo's copy of the Iris data set.
func readIris(t *testing.T) train.Dataset {
	t.Helper()
	file, err := os.Open("../../deploy/demo/iris.csv")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, file.Close()) })
	data, err := train.ReadCSV(file, "")
	require.NoError(t, err)
	return data
}

func TestReadCSVIris(t *testing.T) {
	data := readIris(t)
	require.Equal(t, []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}, data.FeatureNames)
	require.Equal(t, []string{"setosa", "versicolor", "virginica"}, data.Classes)
	require.Len(t, data.Features, 150)
	require.Len(t, data.Labels, 150)
	require.NoError(t, data.Validate())

	counts := make([]int, len(data.Classes))
	sums := make([]float64, len(data.FeatureNames))
	for row, label := range data.Labels {
		counts[label]++
		for column, value := range data.Features[row] {
			sums[column] += value
		}
	}
	require.Equal(t, []int{50, 50, 50}, counts)
	// The well-known column means of Fisher's data.
	for column, want := range []float64{5.843, 3.057, 3.758, 1.199} {
		require.InDelta(t, want, sums[column]/150, 0.0005, data.FeatureNames[column])
	}
	require.Equal(t, []float64{5.1, 3.5, 1.4, 0.2}, data.Features[0])
	require.Equal(t, []float64{5.9, 3.0, 5.1, 1.8}, data.Features[149])
}

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name  string
		csv   string
		label string
		want  train.Dataset
	}{
		{
			name: "last column is the label",
			csv:  "a,b,kind\n1,2,y\n3,4.5,x\n-1e3,0,y\n",
			want: train.Dataset{
				FeatureNames: []string{"a", "b"},
				Classes:      []string{"x", "y"},
				Features:     [][]float64{{1, 2}, {3, 4.5}, {-1000, 0}},
				Labels:       []int{1, 0, 1},
			},
		},
		{
			name:  "label column by name, text columns left out",
			csv:   "id,kind,size,note\nr1,big,10,first\nr2,small, 2,second\n",
			label: "kind",
			want: train.Dataset{
				FeatureNames: []string{"size"},
				Classes:      []string{"big", "small"},
				Features:     [][]float64{{10}, {2}},
				Labels:       []int{0, 1},
			},
		},
		{
			name: "numeric labels are strings too",
			csv:  "x,class\n0.5,10\n0.25,2\n",
			want: train.Dataset{
				FeatureNames: []string{"x"},
				Classes:      []string{"10", "2"},
				Features:     [][]float64{{0.5}, {0.25}},
				Labels:       []int{0, 1},
			},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			data, err := train.ReadCSV(strings.NewReader(test.csv), test.label)
			require.NoError(t, err)
			require.Equal(t, test.want, data)
		})
	}
}

func TestReadCSVErrors(t *testing.T) {
	tests := []struct {
		name  string
		csv   string
		label string
		want  string
	}{
		{name: "empty", csv: "", want: "no header row"},
		{name: "header only", csv: "a,b\n", want: "no data rows after the header"},
		{name: "one column", csv: "label\nx\n", want: "header has 1 column(s)"},
		{name: "unknown label column", csv: "a,b\n1,x\n", label: "species", want: `no label column "species"`},
		{name: "bad cell", csv: "a,b,c\n1,2,x\n3,oops,y\n", want: `line 3, column "b": "oops" is not a finite number`},
		{name: "empty cell", csv: "a,b,c\n1,2,x\n,2,y\n", want: `line 3, column "a": "" is not a finite number`},
		{name: "not a number", csv: "a,b,c\n1,2,x\n1,NaN,y\n", want: `line 3, column "b": "NaN" is not a finite number`},
		{name: "infinite", csv: "a,c\n1,x\n+Inf,y\n", want: `line 3, column "a": "+Inf" is not a finite number`},
		{name: "empty label", csv: "a,c\n1,x\n2,\n", want: `line 3, column "c": the label is empty`},
		{name: "ragged row", csv: "a,b,c\n1,2,x\n1,2\n", want: "record on line 3: wrong number of fields"},
		{name: "no numeric feature", csv: "name,c\nann,x\nbob,y\n", want: `no numeric feature columns besides the label "c"`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := train.ReadCSV(strings.NewReader(test.csv), test.label)
			require.ErrorContains(t, err, test.want)
		})
	}
}

func TestDatasetValidate(t *testing.T) {
	valid := func() train.Dataset {
		return train.Dataset{
			FeatureNames: []string{"a", "b"},
			Classes:      []string{"x", "y"},
			Features:     [][]float64{{1, 2}, {3, 4}},
			Labels:       []int{0, 1},
		}
	}
	tests := []struct {
		name string
		edit func(data *train.Dataset)
		want string
	}{
		{name: "labels missing", edit: func(data *train.Dataset) { data.Labels = data.Labels[:1] }, want: "2 feature rows and 1 labels"},
		{name: "short row", edit: func(data *train.Dataset) { data.Features[1] = []float64{3} }, want: "row 1 has 1 features, want 2"},
		{name: "label out of range", edit: func(data *train.Dataset) { data.Labels[0] = 2 }, want: "row 0: label 2 is not a class index"},
		{name: "not a number", edit: func(data *train.Dataset) { data.Features[0][1] = math.NaN() }, want: `row 0, feature "b": NaN is not a finite number`},
		{name: "negative label", edit: func(data *train.Dataset) { data.Labels[0] = -1 }, want: "row 0: label -1"},
	}
	require.NoError(t, valid().Validate())
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			data := valid()
			test.edit(&data)
			require.ErrorContains(t, data.Validate(), test.want)
		})
	}
}

func TestAppendSplitAndPredict(t *testing.T) {
	data := readIris(t)
	grown, err := data.Append([][]float64{{5, 3, 1.5, 0.2}, {7, 3, 6, 2}}, []string{"setosa", "aardvark"})
	require.NoError(t, err)
	require.Equal(t, []string{"aardvark", "setosa", "versicolor", "virginica"}, grown.Classes, "a new class joins in order")
	require.Len(t, grown.Features, len(data.Features)+2)
	require.Equal(t, data.ClassNames(), grown.ClassNames()[:len(data.Labels)], "the old rows keep their classes")
	require.Equal(t, []string{"setosa", "aardvark"}, grown.ClassNames()[len(data.Labels):])
	_, err = data.Append([][]float64{{1, 2}}, []string{"setosa"})
	require.ErrorContains(t, err, "has 2 features, want 4")

	fit, held := data.Split(0.2, 7)
	require.Len(t, held.Features, 30, "a fifth of each of the three classes of 50")
	require.Len(t, fit.Features, 120)
	again, _ := data.Split(0.2, 7)
	require.Equal(t, fit.Features, again.Features, "the same seed, the same split")

	classifier, _, err := train.Fit(t.Context(), fit, train.DefaultConfig())
	require.NoError(t, err)
	accuracy := train.Accuracy(classifier.Predict(held.Float32Rows()), held.ClassNames())
	require.Greater(t, accuracy, 0.85)
	require.Zero(t, train.Accuracy(nil, held.ClassNames()))
}
