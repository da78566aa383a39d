// Package train fits small classifiers in pure Go and exports them as ONNX
// models that a worker can serve: multinomial logistic regression, or a
// network with one hidden ReLU layer, trained full-batch with Adam on
// standardized features.
//
// ReadCSV loads a table, Fit trains on a stratified split of it and reports
// held-out accuracy, and Classifier.ONNX writes the model with its class
// names in the metadata.
package train

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
)

// Dataset is a table of numeric features and a class label per row.
type Dataset struct {
	// FeatureNames name the columns of Features, in file order.
	FeatureNames []string
	// Classes are the distinct labels in sorted order; Labels index them.
	Classes []string
	// Features holds one row of len(FeatureNames) values per example.
	Features [][]float64
	// Labels holds the class index of each row.
	Labels []int
}

// Validate reports whether the dataset is consistent: every row has one
// finite value per feature and a label that indexes Classes.
func (data Dataset) Validate() error {
	if len(data.Features) != len(data.Labels) {
		return fmt.Errorf("dataset has %d feature rows and %d labels", len(data.Features), len(data.Labels))
	}
	for row, values := range data.Features {
		if len(values) != len(data.FeatureNames) {
			return fmt.Errorf("dataset row %d has %d features, want %d", row, len(values), len(data.FeatureNames))
		}
		for column, value := range values {
			if math.IsNaN(value) || math.IsInf(value, 0) {
				return fmt.Errorf("dataset row %d, feature %q: %v is not a finite number", row, data.FeatureNames[column], value)
			}
		}
		if label := data.Labels[row]; label < 0 || label >= len(data.Classes) {
			return fmt.Errorf("dataset row %d: label %d is not a class index (%d classes)", row, label, len(data.Classes))
		}
	}
	return nil
}

// ReadCSV reads a table with a header row. The label column is the one
// named labelColumn, or the last column when labelColumn is "". Every
// other column in which some cell is a number is a feature column, and
// then all its cells must be finite numbers; columns with no numbers at
// all (names, ids, free text) are left out. Labels are strings, mapped to
// class indices in sorted order. Errors name the line and column of the
// bad cell.
func ReadCSV(r io.Reader, labelColumn string) (Dataset, error) {
	reader := csv.NewReader(r)
	reader.TrimLeadingSpace = true
	header, err := reader.Read()
	if errors.Is(err, io.EOF) {
		return Dataset{}, fmt.Errorf("read csv: no header row")
	}
	if err != nil {
		return Dataset{}, fmt.Errorf("read csv: %w", err)
	}
	label, err := labelIndex(header, labelColumn)
	if err != nil {
		return Dataset{}, fmt.Errorf("read csv: %w", err)
	}
	var records [][]string
	var lines []int
	for {
		record, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Dataset{}, fmt.Errorf("read csv: %w", err)
		}
		line, _ := reader.FieldPos(0)
		records = append(records, record)
		lines = append(lines, line)
	}
	if len(records) == 0 {
		return Dataset{}, fmt.Errorf("read csv: no data rows after the header")
	}
	data, err := buildDataset(header, label, records, lines)
	if err != nil {
		return Dataset{}, fmt.Errorf("read csv: %w", err)
	}
	return data, nil
}

// labelIndex finds the label column in the header.
func labelIndex(header []string, labelColumn string) (int, error) {
	if len(header) < 2 {
		return 0, fmt.Errorf("header has %d column(s), want a label and at least one feature", len(header))
	}
	if labelColumn == "" {
		return len(header) - 1, nil
	}
	index := slices.Index(header, labelColumn)
	if index < 0 {
		return 0, fmt.Errorf("no label column %q in header %q", labelColumn, header)
	}
	return index, nil
}

// buildDataset picks the feature columns, parses them and maps the labels
// to class indices. lines holds the line number of each record.
func buildDataset(header []string, label int, records [][]string, lines []int) (Dataset, error) {
	var columns []int
	for column := range header {
		if column != label && hasNumber(records, column) {
			columns = append(columns, column)
		}
	}
	if len(columns) == 0 {
		return Dataset{}, fmt.Errorf("no numeric feature columns besides the label %q", header[label])
	}
	data := Dataset{Features: make([][]float64, len(records)), Labels: make([]int, len(records))}
	for _, column := range columns {
		data.FeatureNames = append(data.FeatureNames, header[column])
	}
	names := make([]string, len(records))
	for row, record := range records {
		values := make([]float64, len(columns))
		for index, column := range columns {
			value, err := strconv.ParseFloat(record[column], 64)
			if err != nil || math.IsNaN(value) || math.IsInf(value, 0) {
				return Dataset{}, fmt.Errorf("line %d, column %q: %q is not a finite number", lines[row], header[column], record[column])
			}
			values[index] = value
		}
		if record[label] == "" {
			return Dataset{}, fmt.Errorf("line %d, column %q: the label is empty", lines[row], header[label])
		}
		data.Features[row] = values
		names[row] = record[label]
	}
	data.Classes = slices.Compact(slices.Sorted(slices.Values(names)))
	for row, name := range names {
		data.Labels[row], _ = slices.BinarySearch(data.Classes, name)
	}
	return data, nil
}

// hasNumber reports whether some cell of the column parses as a finite
// number.
func hasNumber(records [][]string, column int) bool {
	for _, record := range records {
		value, err := strconv.ParseFloat(record[column], 64)
		if err == nil && !math.IsNaN(value) && !math.IsInf(value, 0) {
			return true
		}
	}
	return false
}

// Float32Rows returns the features as a model's FP32 input takes them, a row each.
func (data Dataset) Float32Rows() [][]float32 {
	rows := make([][]float32, len(data.Features))
	for i, features := range data.Features {
		rows[i] = make([]float32, len(features))
		for j, value := range features {
			rows[i][j] = float32(value)
		}
	}
	return rows
}

// Append returns data with more rows, each labelled by class name. A name
// not among Classes becomes a class; the classes stay sorted and the labels
// are renumbered to match. Every row must have one value per feature.
func (data Dataset) Append(features [][]float64, labels []string) (Dataset, error) {
	if len(features) != len(labels) {
		return Dataset{}, fmt.Errorf("append: %d rows and %d labels", len(features), len(labels))
	}
	names := make([]string, 0, len(data.Labels)+len(labels))
	for _, label := range data.Labels {
		names = append(names, data.Classes[label])
	}
	names = append(names, labels...)
	out := Dataset{
		FeatureNames: slices.Clone(data.FeatureNames),
		Classes:      slices.Compact(slices.Sorted(slices.Values(names))),
		Features:     slices.Concat(data.Features, features),
		Labels:       make([]int, len(names)),
	}
	for row, name := range names {
		out.Labels[row], _ = slices.BinarySearch(out.Classes, name)
	}
	return out, out.Validate()
}

// Split holds out fraction of each class's rows, chosen by seed, as Fit
// does: the rows to fit on, and the rows to measure models on.
func (data Dataset) Split(fraction float64, seed uint64) (fit, held Dataset) {
	fitRows, heldRows := stratifiedSplit(data.Labels, len(data.Classes), fraction, rand.New(rand.NewPCG(seed, splitStream)))
	return data.rows(fitRows), data.rows(heldRows)
}

func (data Dataset) rows(indices []int) Dataset {
	out := Dataset{FeatureNames: data.FeatureNames, Classes: data.Classes}
	for _, row := range indices {
		out.Features = append(out.Features, data.Features[row])
		out.Labels = append(out.Labels, data.Labels[row])
	}
	return out
}

// ClassNames returns each row's label as its class name.
func (data Dataset) ClassNames() []string {
	names := make([]string, len(data.Labels))
	for row, label := range data.Labels {
		names[row] = data.Classes[label]
	}
	return names
}
