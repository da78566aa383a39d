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
)

// csvReader reads a CSV file (RFC 4180, as encoding/csv reads it) whose
// header names the columns; a column called id is the row id, every other
// column a feature. Records without a quote, nearly all of a numeric file,
// are split in place; a record with one goes through encoding/csv, so
// quoted fields, doubled quotes and line breaks inside quotes read the same.
type csvReader struct {
	in       *bufio.Reader
	line     int // physical lines read so far
	idColumn int
	features int
	index    int
	record   []byte    // the current record when it spans several reads
	fields   [][]byte  // the last record's fields
	values   []float64 // the last row's features
	id       []byte    // the last row's id
}

func newCSVReader(r io.Reader, features int) (*csvReader, error) {
	c := &csvReader{in: bufio.NewReaderSize(r, 256<<10), idColumn: -1}
	header, _, err := c.read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("csv header: the input is empty")
	}
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	for i, name := range header {
		if bytes.EqualFold(bytes.TrimSpace(name), []byte("id")) {
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
	fields, line, err := c.read()
	if errors.Is(err, io.EOF) {
		return Row{}, io.EOF
	}
	row := Row{Index: c.index, Line: line}
	c.index++
	var parseErr *csv.ParseError
	if errors.As(err, &parseErr) {
		row.Err = parseErr.Err
		return row, nil
	}
	if err != nil {
		return Row{}, err
	}
	row.Features, row.ID, row.Err = c.parse(fields)
	return row, nil
}

// read returns the next record's fields and the line it starts on, skipping
// empty lines; the fields are valid until the next call. A record that is
// not valid CSV is a *csv.ParseError.
func (c *csvReader) read() ([][]byte, int, error) {
	for {
		raw, start, err := c.readRecord()
		if err != nil {
			return nil, 0, err
		}
		record := trimLineBreak(raw)
		if len(record) == 0 {
			continue
		}
		if bytes.IndexByte(record, '"') >= 0 {
			fields, err := c.splitQuoted(raw, start) // with its line break, which encoding/csv reads as it likes
			return fields, start, err
		}
		c.fields = c.fields[:0]
		for {
			i := bytes.IndexByte(record, ',')
			if i < 0 {
				break
			}
			c.fields = append(c.fields, record[:i])
			record = record[i+1:]
		}
		c.fields = append(c.fields, record)
		return c.fields, start, nil
	}
}

// readRecord returns the next record as it is in the input, line break
// included, the lines a quoted field spans joined, and the line it starts on.
func (c *csvReader) readRecord() ([]byte, int, error) {
	c.record = c.record[:0]
	start := c.line + 1
	var quotes quoteScan
	for {
		line, err := c.in.ReadSlice('\n')
		if len(c.record)+len(line) > maxLine {
			return nil, 0, fmt.Errorf("line %d: a record of more than %d bytes", start, maxLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) { // a long line: keep reading it
			c.record = append(c.record, line...)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, err
		}
		if len(line) > 0 {
			c.line++
		}
		record := line
		if len(c.record) > 0 {
			c.record = append(c.record, line...)
			record = c.record
		}
		if errors.Is(err, io.EOF) {
			if len(record) == 0 {
				return nil, 0, io.EOF
			}
			return record, start, nil
		}
		if !quotes.quoted && bytes.IndexByte(record[quotes.i:], '"') < 0 || !quotes.open(record) {
			return record, start, nil
		}
		if len(c.record) == 0 { // the buffer's next read overwrites line
			c.record = append(c.record, line...)
		}
	}
}

// trimLineBreak cuts a trailing "\n" or "\r\n".
func trimLineBreak(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	return bytes.TrimSuffix(line, []byte{'\r'})
}

// quoteScan finds whether a record ends inside a quoted field, so that it
// goes on on the next line. It goes on from where it stopped as lines are
// added, and it stops where encoding/csv would stop with an error: at a
// quote inside an unquoted field, or at anything but a comma after a
// closing quote. A quote opens a field only as its first character.
type quoteScan struct {
	i      int  // where the scan goes on
	quoted bool // inside a quoted field at i
}

// open scans record from where the last call stopped and reports whether it
// ends inside a quoted field.
func (q *quoteScan) open(record []byte) bool {
	i := q.i
	defer func() { q.i = len(record) }()
	for i < len(record) {
		if !q.quoted {
			if record[i] != '"' { // an unquoted field
				j := bytes.IndexAny(record[i:], ",\"")
				if j < 0 || record[i+j] == '"' {
					return false
				}
				i += j + 1
				continue
			}
			q.quoted = true
			i++
		}
		j := bytes.IndexByte(record[i:], '"')
		if j < 0 {
			return true
		}
		i += j + 1
		if i < len(record) && record[i] == '"' { // a doubled quote
			i++
			continue
		}
		q.quoted = false
		if i == len(record) || record[i] != ',' {
			return false
		}
		i++
	}
	return q.quoted
}

// splitQuoted splits a record holding a quote with encoding/csv; start is
// its first line, which parse errors are reported from.
func (c *csvReader) splitQuoted(record []byte, start int) ([][]byte, error) {
	reader := csv.NewReader(bytes.NewReader(record))
	reader.FieldsPerRecord = -1
	fields, err := reader.Read()
	var parseErr *csv.ParseError
	if errors.As(err, &parseErr) {
		parseErr.StartLine += start - 1
		parseErr.Line += start - 1
		return nil, parseErr
	}
	if err != nil {
		return nil, &csv.ParseError{StartLine: start, Line: start, Err: err}
	}
	c.fields = c.fields[:0]
	for _, field := range fields {
		c.fields = append(c.fields, []byte(field))
	}
	return c.fields, nil
}

// parse reads the id and the features of one record.
func (c *csvReader) parse(record [][]byte) ([]float64, json.RawMessage, error) {
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
		value, err := strconv.ParseFloat(string(bytes.TrimSpace(field)), 64) // not kept: no copy
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
func appendJSONString(dst []byte, s []byte) []byte {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(string(s))
			return append(dst, quoted...)
		}
	}
	return append(append(append(dst, '"'), s...), '"')
}
