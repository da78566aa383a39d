package batch

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"sluice.dev/sluice/events"
)

// chunk is RowsPerRequest consecutive input rows and the request that
// scores the good ones. The producer fills it; result and err are set once,
// by whoever resolves it first (the announcement, a bucket lookup or a
// failed publish), before done is closed; only then does the writer read them.
type chunk struct {
	index     int
	id        string
	rows      []Row
	skip      int // rows already in the output when the run started
	good      int // rows sent in the request
	published time.Time

	once   sync.Once
	done   chan struct{}
	result []byte // the OIP response
	err    error  // the request failed as a whole
}

func newChunk(index int, batchID string) *chunk {
	return &chunk{index: index, id: batchID + "-" + strconv.Itoa(index), done: make(chan struct{})}
}

// resolve records the chunk's outcome, once.
func (c *chunk) resolve(result []byte, err error) {
	c.once.Do(func() {
		c.result, c.err = result, err
		close(c.done)
	})
}

// resolved reports whether the outcome is known.
func (c *chunk) resolved() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// input is the function's first input, which the rows fill.
type input struct {
	name     string
	datatype events.Datatype
	features int // 0: any count
}

// inputOf reads the first input of a model signature.
func inputOf(signature events.Signature) (input, error) {
	if len(signature.Inputs) == 0 {
		return input{}, fmt.Errorf("the model has no inputs")
	}
	spec := signature.Inputs[0]
	if len(spec.Shape) != 2 {
		return input{}, fmt.Errorf("input %q has shape %s: batch scoring takes rank-2 inputs [rows, features]", spec.Name, events.FormatShape(spec.Shape))
	}
	switch spec.Datatype {
	case events.FP32, events.FP64, events.Int32, events.Int64:
	default:
		return input{}, fmt.Errorf("input %q is %s: batch scoring takes FP32, FP64, INT32 or INT64", spec.Name, spec.Datatype)
	}
	return input{name: spec.Name, datatype: spec.Datatype, features: int(max(spec.Shape[1], 0))}, nil
}

// request encodes the chunk's good rows as an OIP v2 request.
func (c *chunk) request(in input) ([]byte, error) {
	var values []float64
	features := 0
	for _, row := range c.rows {
		if row.Err == nil {
			values = append(values, row.Features...)
			features = len(row.Features)
		}
	}
	tensor := events.Tensor{Name: in.name, Shape: []int64{int64(c.good), int64(features)}, Datatype: in.datatype, Data: typed(values, in.datatype)}
	return events.AppendInferenceRequest(nil, &events.InferenceRequest{ID: c.id, Inputs: []events.Tensor{tensor}})
}

// typed converts values to the data slice of datatype.
func typed(values []float64, datatype events.Datatype) any {
	switch datatype {
	case events.FP32:
		return convert[float32](values)
	case events.Int32:
		return convert[int32](values)
	case events.Int64:
		return convert[int64](values)
	}
	return values
}

func convert[T float32 | int32 | int64](values []float64) []T {
	out := make([]T, len(values))
	for i, v := range values {
		out[i] = T(v)
	}
	return out
}

// lines renders one output line per row of the chunk, from its skip'th row.
func (c *chunk) lines(dst []byte) (out []byte, scored, failed int) {
	perRow, err := c.split()
	good := 0
	for i, row := range c.rows {
		var rowOutputs []byte
		rowErr := row.Err
		if rowErr == nil {
			rowOutputs, rowErr = nil, err
			if err == nil {
				rowOutputs = perRow[good]
			}
			good++
		}
		if i < c.skip {
			continue
		}
		dst = appendLine(dst, row, rowOutputs, rowErr)
		if rowErr != nil {
			failed++
		} else {
			scored++
		}
	}
	return dst, scored, failed
}

// appendLine writes {"row":…,"id":…,"outputs":{…}} or {"row":…,"line":…,"error":"…"}.
func appendLine(dst []byte, row Row, outputs []byte, err error) []byte {
	dst = append(dst, `{"row":`...)
	dst = strconv.AppendInt(dst, int64(row.Index), 10)
	if row.ID != nil {
		dst = append(dst, `,"id":`...)
		dst = append(dst, row.ID...)
	}
	if err != nil {
		dst = append(dst, `,"line":`...)
		dst = strconv.AppendInt(dst, int64(row.Line), 10)
		message, _ := json.Marshal(err.Error())
		dst = append(dst, `,"error":`...)
		dst = append(dst, message...)
	} else {
		dst = append(dst, `,"outputs":`...)
		dst = append(dst, outputs...)
	}
	return append(dst, "}\n"...)
}

// split decodes the response into one JSON object of outputs per good row.
func (c *chunk) split() ([][]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.good == 0 {
		return nil, nil
	}
	response, err := events.DecodeInferenceResponse(c.result, events.Limits{MaxElements: 1 << 28})
	if err != nil {
		return nil, fmt.Errorf("the function's answer: %w", err)
	}
	perRow := make([][]byte, c.good)
	for i := range perRow {
		perRow[i] = append(perRow[i], '{')
	}
	for _, output := range response.Outputs {
		if err := appendOutput(perRow, output); err != nil {
			return nil, err
		}
	}
	for i := range perRow {
		if len(perRow[i]) > 1 {
			perRow[i] = perRow[i][:len(perRow[i])-1] // the last ','
		}
		perRow[i] = append(perRow[i], '}')
	}
	return perRow, nil
}

// appendOutput adds "name":value to each row's object: a scalar for a rank-1
// output, the row's elements as a flat array otherwise.
func appendOutput(perRow [][]byte, output events.Tensor) error {
	if len(output.Shape) == 0 || output.Shape[0] != int64(len(perRow)) {
		return fmt.Errorf("output %q has shape %s, want %d rows", output.Name, events.FormatShape(output.Shape), len(perRow))
	}
	ones := make([]int64, len(perRow))
	for i := range ones {
		ones[i] = 1
	}
	rows, err := events.SplitRows(output, ones)
	if err != nil {
		return fmt.Errorf("output %q: %w", output.Name, err)
	}
	name, _ := json.Marshal(output.Name)
	for i, row := range rows {
		line := append(append(perRow[i], name...), ':')
		start := len(line)
		if line, err = events.AppendTensorData(line, row); err != nil {
			return fmt.Errorf("output %q row %d: %w", output.Name, i, err)
		}
		if len(output.Shape) == 1 { // one element a row: the value, not a one-element array
			line = append(line[:start], line[start+1:len(line)-1]...)
		}
		perRow[i] = append(line, ',')
	}
	return nil
}
