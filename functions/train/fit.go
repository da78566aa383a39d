package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// splitStream keeps the random stream of Fit apart from other users of the
// same seed.
const splitStream = 0x5111ce

// Fit trains a classifier on data as cfg says and reports how well it does
// on the rows it held out.
//
// The split is stratified: TestFraction of each class (rounded, and never
// a class's every row) is held out, chosen by a shuffle seeded with
// cfg.Seed. Features are standardized with the mean and standard deviation
// of the training rows (a constant feature is only centered). Training is
// full-batch Adam on the mean softmax cross-entropy plus L2. Fit checks ctx
// between epochs and returns its error when it is done.
func Fit(ctx context.Context, data Dataset, cfg Config) (*Classifier, Report, error) {
	started := time.Now()
	if err := cfg.Validate(); err != nil {
		return nil, Report{}, fmt.Errorf("fit: config: %w", err)
	}
	if err := data.Validate(); err != nil {
		return nil, Report{}, fmt.Errorf("fit: %w", err)
	}
	if len(data.FeatureNames) == 0 {
		return nil, Report{}, fmt.Errorf("fit: the dataset has no features")
	}
	if len(data.Classes) < 2 {
		return nil, Report{}, fmt.Errorf("fit: %d class(es), want at least 2", len(data.Classes))
	}
	random := rand.New(rand.NewPCG(cfg.Seed, splitStream))
	trainRows, testRows := stratifiedSplit(data.Labels, len(data.Classes), cfg.TestFraction, random)
	if len(testRows) == 0 {
		return nil, Report{}, fmt.Errorf("fit: %d rows are too few to hold out %v of any class", len(data.Labels), cfg.TestFraction)
	}
	classifier := &Classifier{
		featureNames: slices.Clone(data.FeatureNames),
		classes:      slices.Clone(data.Classes),
	}
	classifier.mean, classifier.scale = standardization(data.Features, trainRows)
	trainBatch, trainLabels := classifier.batch(data, trainRows)
	classifier.net = newNetwork(len(data.FeatureNames), cfg.HiddenUnits, len(data.Classes), random)

	gradients := classifier.net.zeroLike()
	optimizer := newAdam(cfg.LearningRate, classifier.net.parameters())
	loss := math.NaN()
	for epoch := range cfg.Epochs {
		if err := ctx.Err(); err != nil {
			return nil, Report{}, fmt.Errorf("fit: stopped at epoch %d: %w", epoch, err)
		}
		activations := classifier.net.forward(trainBatch, len(trainRows))
		loss = classifier.net.backward(activations, trainLabels, cfg.L2, gradients)
		optimizer.update(classifier.net.parameters(), gradients.parameters())
	}
	testBatch, testLabels := classifier.batch(data, testRows)
	report := Report{
		TrainAccuracy: classifier.accuracy(trainBatch, trainLabels),
		TestAccuracy:  classifier.accuracy(testBatch, testLabels),
		TrainLoss:     loss,
		Rows:          len(data.Labels),
		TrainRows:     len(trainRows),
		TestRows:      len(testRows),
		Features:      len(data.FeatureNames),
		Classes:       len(data.Classes),
		Epochs:        cfg.Epochs,
		Duration:      time.Since(started),
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return nil, report, fmt.Errorf("fit: the loss diverged to %v; lower the learning rate", loss)
	}
	return classifier, report, nil
}

// stratifiedSplit shuffles the rows of each class and holds out the first
// round(count × fraction) of them, leaving at least one row of each class
// for training. Both lists come back in ascending row order.
func stratifiedSplit(labels []int, classes int, fraction float64, random *rand.Rand) (train, test []int) {
	byClass := make([][]int, classes)
	for row, label := range labels {
		byClass[label] = append(byClass[label], row)
	}
	for _, rows := range byClass {
		random.Shuffle(len(rows), func(first, second int) { rows[first], rows[second] = rows[second], rows[first] })
		held := min(int(math.Round(float64(len(rows))*fraction)), len(rows)-1)
		held = max(held, 0)
		test = append(test, rows[:held]...)
		train = append(train, rows[held:]...)
	}
	slices.Sort(train)
	slices.Sort(test)
	return train, test
}

// standardization returns the mean and standard deviation of each feature
// over the given rows; a deviation of 0 is returned as 1, so that dividing
// by it is safe and leaves a constant feature at 0.
func standardization(features [][]float64, rows []int) (mean, scale []float64) {
	width := len(features[rows[0]])
	mean = make([]float64, width)
	scale = make([]float64, width)
	for _, row := range rows {
		for column, value := range features[row] {
			mean[column] += value
		}
	}
	for column := range mean {
		mean[column] /= float64(len(rows))
	}
	for _, row := range rows {
		for column, value := range features[row] {
			scale[column] += (value - mean[column]) * (value - mean[column])
		}
	}
	for column := range scale {
		scale[column] = math.Sqrt(scale[column] / float64(len(rows)))
		if scale[column] == 0 {
			scale[column] = 1
		}
	}
	return mean, scale
}

// batch returns the standardized features of the given rows as one
// row-major slice, and their labels.
func (classifier *Classifier) batch(data Dataset, rows []int) ([]float64, []int) {
	width := len(classifier.mean)
	batch := make([]float64, 0, len(rows)*width)
	labels := make([]int, 0, len(rows))
	for _, row := range rows {
		for column, value := range data.Features[row] {
			batch = append(batch, (value-classifier.mean[column])/classifier.scale[column])
		}
		labels = append(labels, data.Labels[row])
	}
	return batch, labels
}

// accuracy is the share of rows of a standardized batch whose largest
// logit is their label's.
func (classifier *Classifier) accuracy(batch []float64, labels []int) float64 {
	if len(labels) == 0 {
		return 0
	}
	activations := classifier.net.forward(batch, len(labels))
	logits := activations[len(activations)-1]
	classes := len(classifier.classes)
	correct := 0
	for row, label := range labels {
		if argmax(logits[row*classes:(row+1)*classes]) == label {
			correct++
		}
	}
	return float64(correct) / float64(len(labels))
}

// argmax returns the index of the largest value, the first on ties, as
// ONNX ArgMax does.
func argmax(values []float64) int {
	best := 0
	for index, value := range values {
		if value > values[best] {
			best = index
		}
	}
	return best
}
