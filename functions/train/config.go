package train

import (
	"fmt"
	"math"
	"time"
)

// Limits on Config, to keep a bad request from tying up a trainer.
const (
	maxHiddenUnits = 4096
	maxEpochs      = 1_000_000
)

// Config sets how Fit trains.
type Config struct {
	// HiddenUnits is the width of the hidden ReLU layer; 0 means no hidden
	// layer, that is multinomial logistic regression.
	HiddenUnits int
	// Epochs is the number of full-batch gradient steps.
	Epochs int
	// LearningRate is Adam's step size.
	LearningRate float64
	// L2 is the weight decay on weights (not biases), added to the loss as
	// L2/2 times the sum of squared weights.
	L2 float64
	// TestFraction is the share of each class held out for testing, in (0, 1).
	TestFraction float64
	// Seed fixes the split and the initial weights: the same data, Config
	// and Seed give the same Classifier.
	Seed uint64
}

// DefaultConfig is a network with 16 hidden units trained for 300 epochs,
// which fits small tabular problems such as Iris in milliseconds.
func DefaultConfig() Config {
	return Config{
		HiddenUnits:  16,
		Epochs:       300,
		LearningRate: 0.02,
		L2:           1e-2,
		TestFraction: 0.2,
		Seed:         1,
	}
}

// Validate reports the first setting out of range.
func (cfg Config) Validate() error {
	switch {
	case cfg.HiddenUnits < 0 || cfg.HiddenUnits > maxHiddenUnits:
		return fmt.Errorf("hidden units %d: want 0 (logistic regression) to %d", cfg.HiddenUnits, maxHiddenUnits)
	case cfg.Epochs < 1 || cfg.Epochs > maxEpochs:
		return fmt.Errorf("epochs %d: want 1 to %d", cfg.Epochs, maxEpochs)
	case !(cfg.LearningRate > 0) || math.IsInf(cfg.LearningRate, 0):
		return fmt.Errorf("learning rate %v: want a finite number above 0", cfg.LearningRate)
	case !(cfg.L2 >= 0) || math.IsInf(cfg.L2, 0):
		return fmt.Errorf("l2 %v: want a finite number of 0 or more", cfg.L2)
	case !(cfg.TestFraction > 0 && cfg.TestFraction < 1):
		return fmt.Errorf("test fraction %v: want more than 0 and less than 1", cfg.TestFraction)
	}
	return nil
}

// Report describes a Fit.
type Report struct {
	// TrainAccuracy is the share of training rows classified correctly.
	TrainAccuracy float64
	// TestAccuracy is the share of held-out rows classified correctly.
	TestAccuracy float64
	// TrainLoss is the final mean cross-entropy on the training rows,
	// without the L2 term.
	TrainLoss float64
	// Rows, TrainRows and TestRows count the dataset and its split.
	Rows      int
	TrainRows int
	TestRows  int
	// Features and Classes count the columns and the distinct labels.
	Features int
	Classes  int
	// Epochs is the number of gradient steps taken.
	Epochs int
	// Duration is the wall time Fit took.
	Duration time.Duration
}
