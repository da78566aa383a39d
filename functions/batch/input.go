package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxLine bounds one JSONL line, checked before it is parsed.
const maxLine = 16 << 20

// Row is one input row. Err says why a bad row cannot be scored.
type Row struct {
	// Index counts the data rows from 0, bad ones included: it is the
	// row's line in the output.
	Index int
	// Line is the row's line in the input file, from 1.
	Line int
	// ID is the row's id as JSON, or nil when it has none.
	ID       json.RawMessage
	Features []float64
	Err      error
}

// rowReader yields rows until io.EOF; any other error stops the batch. A
// row's ID and Features may be overwritten by the next call.
type rowReader interface {
	next() (Row, error)
}

// newRowReader reads r as format; features is the model's feature count,
// 0 when any count is accepted.
func newRowReader(r io.Reader, format string, features int) (rowReader, error) {
	if format == "csv" {
		return newCSVReader(r, features)
	}
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64<<10), maxLine)
	return &jsonlReader{scanner: scanner, features: features}, nil
}

// jsonlReader reads one JSON value per line; blank lines are skipped.
type jsonlReader struct {
	scanner  *bufio.Scanner
	features int
	line     int
	index    int
	values   []float64 // the last row's features, when read without encoding/json
}

// jsonlObject is the object form of a JSONL row.
type jsonlObject struct {
	ID       json.RawMessage `json:"id"`
	Features []float64       `json:"features"`
}

func (j *jsonlReader) next() (Row, error) {
	for j.scanner.Scan() {
		j.line++
		text := bytes.TrimSpace(j.scanner.Bytes())
		if len(text) == 0 {
			continue
		}
		row := Row{Index: j.index, Line: j.line}
		j.index++
		row.Features, row.ID, row.Err = j.parse(text)
		return row, nil
	}
	if err := j.scanner.Err(); err != nil {
		return Row{}, fmt.Errorf("line %d: %w", j.line+1, err)
	}
	return Row{}, io.EOF
}

// parse reads a JSON array of numbers or an object with id and features.
func (j *jsonlReader) parse(text []byte) ([]float64, json.RawMessage, error) {
	features, id, ok := j.parseFast(text)
	if !ok {
		var err error
		if features, id, err = parseJSON(text); err != nil {
			return nil, nil, err
		}
	}
	if j.features == 0 { // the model takes any count: the first row fixes it
		j.features = len(features)
	}
	if len(features) != j.features {
		return nil, nil, fmt.Errorf("%d features, the model takes %d", len(features), j.features)
	}
	return features, id, nil
}

// parseJSON reads a row with encoding/json.
func parseJSON(text []byte) ([]float64, json.RawMessage, error) {
	var object jsonlObject
	switch text[0] {
	case '[':
		if err := json.Unmarshal(text, &object.Features); err != nil {
			return nil, nil, fmt.Errorf("want an array of numbers: %v", err)
		}
	case '{':
		if err := json.Unmarshal(text, &object); err != nil {
			return nil, nil, fmt.Errorf("want {\"id\": …, \"features\": [numbers]}: %v", err)
		}
		if object.Features == nil {
			return nil, nil, errors.New("features: missing")
		}
	default:
		return nil, nil, fmt.Errorf("want a JSON array or object, got %q", shorten(text))
	}
	return object.Features, object.ID, nil
}

func shorten(text []byte) string {
	if len(text) > 40 {
		return string(text[:40]) + "…"
	}
	return string(text)
}
