package batch

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
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

// csvReader reads a CSV file whose header names the columns; a column
// called id is the row id, every other column a feature.
type csvReader struct {
	reader   *csv.Reader
	idColumn int
	features int
	index    int
	values   []float64 // the last row's features
	id       []byte    // the last row's id
}

func newCSVReader(r io.Reader, features int) (*csvReader, error) {
	reader := csv.NewReader(r)
	reader.FieldsPerRecord = -1
	reader.ReuseRecord = true
	header, err := reader.Read()
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	c := &csvReader{reader: reader, idColumn: -1}
	for i, name := range header {
		if strings.EqualFold(strings.TrimSpace(name), "id") {
			c.idColumn = i
		}
	}
	c.features = len(header)
	if c.idColumn >= 0 {
		c.features--
	}
	if features > 0 && c.features != features {
		return nil, fmt.Errorf("csv header: %d feature columns, the model takes %d", c.features, features)
	}
	return c, nil
}

func (c *csvReader) next() (Row, error) {
	record, err := c.reader.Read()
	if errors.Is(err, io.EOF) {
		return Row{}, io.EOF
	}
	row := Row{Index: c.index}
	c.index++
	var parseErr *csv.ParseError
	if errors.As(err, &parseErr) {
		row.Line, row.Err = parseErr.StartLine, parseErr.Err
		return row, nil
	}
	if err != nil {
		return Row{}, err
	}
	row.Line, _ = c.reader.FieldPos(0)
	row.Features, row.ID, row.Err = c.parse(record)
	return row, nil
}

// parse reads the id and the features of one record.
func (c *csvReader) parse(record []string) ([]float64, json.RawMessage, error) {
	want := c.features
	if c.idColumn >= 0 {
		want++
	}
	if len(record) != want {
		return nil, nil, fmt.Errorf("%d fields, the header has %d", len(record), want)
	}
	var id json.RawMessage
	features := c.values[:0]
	for i, field := range record {
		if i == c.idColumn {
			c.id = appendJSONString(c.id[:0], field)
			id = c.id
			continue
		}
		value, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
		if err != nil || math.IsNaN(value) || math.IsInf(value, 0) {
			return nil, nil, fmt.Errorf("column %d: %q is not a finite number", i+1, field)
		}
		features = append(features, value)
	}
	c.values = features
	return features, id, nil
}

// appendJSONString appends s as a JSON string: as it is between quotes when
// no character needs escaping, as encoding/json writes it otherwise.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s)
			return append(dst, quoted...)
		}
	}
	return append(append(append(dst, '"'), s...), '"')
}

// jsonlReader reads one JSON value per line; blank lines are skipped.
type jsonlReader struct {
	scanner  *bufio.Scanner
	features int
	line     int
	index    int
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
	if j.features == 0 { // the model takes any count: the first row fixes it
		j.features = len(object.Features)
	}
	if len(object.Features) != j.features {
		return nil, nil, fmt.Errorf("%d features, the model takes %d", len(object.Features), j.features)
	}
	return object.Features, object.ID, nil
}

func shorten(text []byte) string {
	if len(text) > 40 {
		return string(text[:40]) + "…"
	}
	return string(text)
}
