package train

import (
	"context"
	"fmt"
	"os"
)

// FitFile reads labelled rows from the CSV file at path (label column as for
// ReadCSV) and fits a classifier on them.
func FitFile(ctx context.Context, path, labelColumn string, cfg Config) (*Classifier, Dataset, Report, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, Dataset{}, Report{}, err
	}
	defer file.Close()
	data, err := ReadCSV(file, labelColumn)
	if err != nil {
		return nil, Dataset{}, Report{}, fmt.Errorf("%s: %w", path, err)
	}
	classifier, report, err := Fit(ctx, data, cfg)
	return classifier, data, report, err
}
