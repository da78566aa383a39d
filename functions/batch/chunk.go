package batch

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"sluice.dev/sluice/events/oip"
)

// chunk is RowsPerRequest consecutive input rows and the request that
// scores the good ones. The producer fills it; result and err are set once,
// by whoever resolves it first (the announcement, a bucket lookup or a
// failed publish), before done is closed; only then does the writer read them.
type chunk struct {
	index int
	id    string
	first int // the Index of its first row
	rows  int
	skip  int // rows already in the output when the run started
	good  int // rows sent in the request
	// values holds the features of the good rows, one after the other.
	values   []float64
	features int
	// lines[i] is row i's line in the input; ids[idEnds[i-1]:idEnds[i]] is
	// its id as JSON, empty when it has none.
	lines  []int32
	ids    []byte
	idEnds []int32
	bad    []badRow // in row order
	// published is when the request was published; zero if it was not.
	published time.Time

	once         sync.Once
	done         chan struct{}
	result       []byte // the OIP response
	headerLength int    // of result's JSON inference header, 0 when result is JSON
	err          error  // the request failed as a whole
	// scored holds the outputs themselves when the chunk was scored in this
	// process (RunLocal), instead of result.
	scored []oip.Tensor
}

// badRow is a row of the chunk that cannot be scored.
type badRow struct {
	row int // within the chunk
	err error
}

// maxPresized bounds the features a new chunk makes room for: beyond it,
// the rows that come are what it grows to.
const maxPresized = 1 << 16

// newChunk starts chunk index with its first row, with room for rows rows
// of features features each, up to maxPresized features.
func newChunk(index int, batchID string, first, rows, features int) *chunk {
	return &chunk{
		index: index, id: batchID + "-" + strconv.Itoa(index), first: first, done: make(chan struct{}),
		values: make([]float64, 0, min(rows*features, maxPresized)), lines: make([]int32, 0, rows), idEnds: make([]int32, 0, rows),
	}
}

// add appends row, which must be the chunk's next one, checking its features
// against in; it returns why the row cannot be scored, if it cannot.
func (c *chunk) add(row Row, in input) error {
	if row.Err == nil {
		row.Err = in.check(row.Features)
	}
	c.lines = append(c.lines, int32(row.Line))
	c.ids = append(c.ids, row.ID...)
	c.idEnds = append(c.idEnds, int32(len(c.ids)))
	if row.Err != nil {
		c.bad = append(c.bad, badRow{row: c.rows, err: row.Err})
	} else {
		c.values = append(c.values, row.Features...)
		c.features = len(row.Features)
		c.good++
	}
	c.rows++
	return row.Err
}

// rowID returns row i's id as JSON, or nil.
func (c *chunk) rowID(i int) []byte {
	start := int32(0)
	if i > 0 {
		start = c.idEnds[i-1]
	}
	if start == c.idEnds[i] {
		return nil
	}
	return c.ids[start:c.idEnds[i]]
}

// resolve records the chunk's outcome, once.
func (c *chunk) resolve(result []byte, headerLength int, err error) {
	c.once.Do(func() {
		c.result, c.headerLength, c.err = result, headerLength, err
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
	datatype oip.Datatype
	features int // 0: any count
}

// inputOf reads the first input of a model signature.
func inputOf(signature oip.Signature) (input, error) {
	if len(signature.Inputs) == 0 {
		return input{}, fmt.Errorf("the model has no inputs")
	}
	spec := signature.Inputs[0]
	if len(spec.Shape) != 2 {
		return input{}, fmt.Errorf("input %q has shape %s: batch scoring takes rank-2 inputs [rows, features]", spec.Name, oip.FormatShape(spec.Shape))
	}
	switch spec.Datatype {
	case oip.FP32, oip.FP64, oip.Int32, oip.Int64:
	default:
		return input{}, fmt.Errorf("input %q is %s: batch scoring takes FP32, FP64, INT32 or INT64", spec.Name, spec.Datatype)
	}
	return input{name: spec.Name, datatype: spec.Datatype, features: int(max(spec.Shape[1], 0))}, nil
}

// check reports a feature the input's datatype cannot hold.
func (in input) check(features []float64) error {
	var low, high float64
	switch in.datatype {
	case oip.Int32:
		low, high = math.MinInt32, math.MaxInt32
	case oip.Int64:
		low, high = -(1 << 53), 1<<53 // integers a float64 holds exactly
	case oip.FP32:
		for i, v := range features {
			if math.Abs(v) > math.MaxFloat32 {
				return fmt.Errorf("feature %d: %g does not fit FP32", i+1, v)
			}
		}
		return nil
	default:
		return nil
	}
	for i, v := range features {
		if v != math.Trunc(v) || v < low || v > high {
			return fmt.Errorf("feature %d: %g is not an integer %s holds", i+1, v, in.datatype)
		}
	}
	return nil
}

// request encodes the chunk's good rows as an OIP v2 request in the binary
// tensor data extension, asking for every output in binary; it returns the
// body and the length of its JSON inference header.
func (c *chunk) request(in input) ([]byte, int, error) {
	req := &oip.InferenceRequest{ID: c.id, Inputs: []oip.Tensor{c.tensor(in)}, Parameters: map[string]any{"binary_data_output": true}}
	return oip.AppendInferenceRequestBinary(nil, req, func(string) bool { return true })
}

// tensor is the input tensor of the chunk's good rows.
func (c *chunk) tensor(in input) oip.Tensor {
	return oip.Tensor{Name: in.name, Shape: []int64{int64(c.good), int64(c.features)}, Datatype: in.datatype, Data: typed(c.values, in.datatype)}
}

// typed converts values to the data slice of datatype.
func typed(values []float64, datatype oip.Datatype) any {
	switch datatype {
	case oip.FP32:
		return convert[float32](values)
	case oip.Int32:
		return convert[int32](values)
	case oip.Int64:
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

// answerLimits bound nothing but what the answer itself holds: the decoder
// allocates no more than its bytes can fill.
var answerLimits = oip.Limits{MaxElements: math.MaxInt64, MaxTensors: math.MaxInt}

// render appends one output line per row of the chunk, from its skip'th
// row: {"row":…,"id":…,"outputs":{…}} or {"row":…,"id":…,"line":…,"error":"…"}.
func (c *chunk) render(dst []byte) (out []byte, scored, failed int) {
	outputs, err := c.outputs()
	good, bad := 0, c.bad
	for i := range c.rows {
		rowErr := err
		if len(bad) > 0 && bad[0].row == i {
			rowErr, bad = bad[0].err, bad[1:]
		} else {
			good++
		}
		if i < c.skip {
			continue
		}
		dst = append(dst, `{"row":`...)
		dst = strconv.AppendInt(dst, int64(c.first+i), 10)
		if id := c.rowID(i); id != nil {
			dst = append(append(dst, `,"id":`...), id...)
		}
		if rowErr == nil {
			head := len(dst)
			if dst, rowErr = outputs.append(dst, good-1); rowErr != nil {
				dst = dst[:head] // an output JSON cannot hold: the row fails
			}
		}
		if rowErr != nil {
			dst = append(dst, `,"line":`...)
			dst = strconv.AppendInt(dst, int64(c.lines[i]), 10)
			message, _ := json.Marshal(rowErr.Error())
			dst = append(append(dst, `,"error":`...), message...)
			failed++
		} else {
			scored++
		}
		dst = append(dst, "}\n"...)
	}
	return dst, scored, failed
}

// rowOutputs writes the outputs of one row as a JSON object.
type rowOutputs struct {
	names   [][]byte // as JSON strings
	writers []*oip.RowWriter
}

// append writes `,"outputs":{"name":value,…}` for row i of the answer.
func (o rowOutputs) append(dst []byte, i int) ([]byte, error) {
	dst = append(dst, `,"outputs":{`...)
	for k, w := range o.writers {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(dst, o.names[k]...), ':')
		var err error
		if dst, err = w.AppendRow(dst, i); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// outputs decodes the answer into a row writer per output.
func (c *chunk) outputs() (rowOutputs, error) {
	if c.err != nil || c.good == 0 {
		return rowOutputs{}, c.err
	}
	response := &oip.InferenceResponse{Outputs: c.scored}
	var err error
	switch {
	case c.scored != nil:
	case c.headerLength > 0:
		response, err = oip.DecodeInferenceResponseBinary(c.result, int64(c.headerLength), answerLimits)
	default:
		response, err = oip.DecodeInferenceResponse(c.result, answerLimits)
	}
	if err != nil {
		return rowOutputs{}, fmt.Errorf("the function's answer: %w", err)
	}
	o := rowOutputs{names: make([][]byte, len(response.Outputs)), writers: make([]*oip.RowWriter, len(response.Outputs))}
	for k, output := range response.Outputs {
		if o.writers[k], err = oip.NewRowWriter(output); err != nil {
			return rowOutputs{}, fmt.Errorf("the function's answer: %w", err)
		}
		if rows := o.writers[k].Rows(); rows != c.good {
			return rowOutputs{}, fmt.Errorf("the function's answer: output %q has %d rows, want %d", output.Name, rows, c.good)
		}
		o.names[k], _ = json.Marshal(output.Name)
	}
	return o, nil
}
