package oip

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
)

// mustTensor is NewTensor for test tables.
func mustTensor(t *testing.T, name string, shape []int64, data any) Tensor {
	t.Helper()
	tensor, err := NewTensor(name, shape, data)
	require.NoError(t, err)
	return tensor
}

func TestConcatRowsThenSplitRowsRoundTrips(t *testing.T) {
	h := float16.Fromfloat32
	tests := []struct {
		name  string
		parts func(t *testing.T) []Tensor
		want  Tensor
	}{
		{
			name: "FP32 matrices",
			parts: func(t *testing.T) []Tensor {
				return []Tensor{
					mustTensor(t, "x", []int64{1, 2}, []float32{1, 2}),
					mustTensor(t, "x", []int64{2, 2}, []float32{3, 4, 5, 6}),
				}
			},
			want: Tensor{Name: "x", Shape: []int64{3, 2}, Datatype: FP32, Data: []float32{1, 2, 3, 4, 5, 6}},
		},
		{
			name: "BYTES vectors with an empty part",
			parts: func(t *testing.T) []Tensor {
				return []Tensor{
					mustTensor(t, "s", []int64{1}, []string{"a"}),
					mustTensor(t, "s", []int64{0}, []string{}),
					mustTensor(t, "s", []int64{2}, []string{"b", "c"}),
				}
			},
			want: Tensor{Name: "s", Shape: []int64{3}, Datatype: Bytes, Data: []string{"a", "b", "c"}},
		},
		{
			name: "FP16 rank 3 with parameters",
			parts: func(t *testing.T) []Tensor {
				parts := []Tensor{
					mustTensor(t, "h", []int64{1, 1, 2}, []float16.Float16{h(1), h(2)}),
					mustTensor(t, "h", []int64{1, 1, 2}, []float16.Float16{h(3), h(4)}),
				}
				for i := range parts {
					parts[i].Parameters = map[string]any{"unit": "m"}
				}
				return parts
			},
			want: Tensor{Name: "h", Shape: []int64{2, 1, 2}, Datatype: FP16, Parameters: map[string]any{"unit": "m"},
				Data: []float16.Float16{h(1), h(2), h(3), h(4)}},
		},
		{
			name: "single BOOL part",
			parts: func(t *testing.T) []Tensor {
				return []Tensor{mustTensor(t, "b", []int64{2}, []bool{true, false})}
			},
			want: Tensor{Name: "b", Shape: []int64{2}, Datatype: Bool, Data: []bool{true, false}},
		},
		{
			name: "zero-width rows",
			parts: func(t *testing.T) []Tensor {
				return []Tensor{mustTensor(t, "z", []int64{2, 0}, []int64{}), mustTensor(t, "z", []int64{1, 0}, []int64{})}
			},
			want: Tensor{Name: "z", Shape: []int64{3, 0}, Datatype: Int64, Data: []int64{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := tt.parts(t)
			joined, err := ConcatRows(parts)
			require.NoError(t, err)
			require.Equal(t, tt.want, joined)

			rows := make([]int64, len(parts))
			for i, part := range parts {
				rows[i] = part.Shape[0]
			}
			split, err := SplitRows(joined, rows)
			require.NoError(t, err)
			require.Equal(t, parts, split)
		})
	}
}

func TestConcatRowsCopiesAndSplitRowsCaps(t *testing.T) {
	a := mustTensor(t, "x", []int64{1}, []int32{1})
	b := mustTensor(t, "x", []int64{1}, []int32{2})
	joined, err := ConcatRows([]Tensor{a})
	require.NoError(t, err)
	joined.Data.([]int32)[0] = 9
	require.Equal(t, []int32{1}, a.Data, "ConcatRows copies the data")

	joined, err = ConcatRows([]Tensor{a, b})
	require.NoError(t, err)
	split, err := SplitRows(joined, []int64{1, 1})
	require.NoError(t, err)
	grown := append(split[0].Data.([]int32), 7)
	require.Equal(t, []int32{1, 7}, grown)
	require.Equal(t, []int32{2}, split[1].Data, "appending to one part leaves the next alone")
}

func TestConcatRowsErrors(t *testing.T) {
	x := func(shape []int64, data any) Tensor { return mustTensor(t, "x", shape, data) }
	tests := []struct {
		name    string
		parts   []Tensor
		field   string
		problem string
	}{
		{"no parts", nil, "parts", "empty"},
		{"other name", []Tensor{x([]int64{1}, []float32{1}), mustTensor(t, "y", []int64{1}, []float32{1})}, "parts[1].name", `"y" differs from "x" of parts[0]`},
		{"other datatype", []Tensor{x([]int64{1}, []float32{1}), x([]int64{1}, []float64{1})}, "parts[1].datatype", "FP64 differs from FP32 of parts[0]"},
		{"other trailing dims", []Tensor{x([]int64{1, 4}, make([]int8, 4)), x([]int64{1, 3}, make([]int8, 3))}, "parts[1].shape", "[1,3] differs from [1,4] of parts[0] after dimension 0"},
		{"other rank", []Tensor{x([]int64{1, 2}, make([]int8, 2)), x([]int64{2}, make([]int8, 2))}, "parts[1].shape", "[2] differs from [1,2]"},
		{"rank 0", []Tensor{x([]int64{}, []int8{1})}, "parts[0].shape", "rank 0 has no dimension 0"},
		{"invalid part", []Tensor{x([]int64{1}, []int8{1}), {Name: "x", Shape: []int64{2}, Datatype: Int8, Data: []int8{1}}}, "parts[1].shape", "product 2 does not match 1 data elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ConcatRows(tt.parts)
			requireFieldError(t, err, tt.field, tt.problem)
		})
	}
}

func TestSplitRowsErrors(t *testing.T) {
	matrix := mustTensor(t, "x", []int64{3, 2}, make([]float64, 6))
	tests := []struct {
		name    string
		tensor  Tensor
		rows    []int64
		field   string
		problem string
	}{
		{"too few rows", matrix, []int64{1, 1}, "rows", "add up to 2, not dimension 0 of [3,2]"},
		{"too many rows", matrix, []int64{2, 2}, "rows", "add up to more than dimension 0 of [3,2]"},
		{"negative rows", matrix, []int64{1, -1}, "rows[1]", "-1 is negative"},
		{"rank 0", mustTensor(t, "x", []int64{}, []float64{1}), []int64{1}, "tensor.shape", "rank 0 has no dimension 0"},
		{"invalid tensor", Tensor{Name: "x", Shape: []int64{1}, Datatype: FP64, Data: []float32{1}}, []int64{1}, "tensor.data", "holds []float32, want []float64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SplitRows(tt.tensor, tt.rows)
			requireFieldError(t, err, tt.field, tt.problem)
		})
	}
}

func TestCanBatch(t *testing.T) {
	base := Tensor{Name: "x", Datatype: FP32, Shape: []int64{1, 4}}
	tests := []struct {
		name  string
		other Tensor
		want  bool
	}{
		{"more rows", Tensor{Name: "x", Datatype: FP32, Shape: []int64{8, 4}}, true},
		{"other name", Tensor{Name: "y", Datatype: FP32, Shape: []int64{1, 4}}, false},
		{"other datatype", Tensor{Name: "x", Datatype: FP16, Shape: []int64{1, 4}}, false},
		{"other width", Tensor{Name: "x", Datatype: FP32, Shape: []int64{1, 5}}, false},
		{"other rank", Tensor{Name: "x", Datatype: FP32, Shape: []int64{4}}, false},
		{"rank 0", Tensor{Name: "x", Datatype: FP32, Shape: []int64{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, CanBatch(base, tt.other))
			require.Equal(t, tt.want, CanBatch(tt.other, base))
		})
	}
}

func TestRowWriterWritesOneRowAtATime(t *testing.T) {
	probabilities := mustTensor(t, "probabilities", []int64{2, 3}, []float32{0.5, 0.25, 0.25, 0, 1, 0})
	label := mustTensor(t, "label", []int64{2}, []int64{0, 1})
	class := mustTensor(t, "class", []int64{2}, []string{"setosa", `"quoted"`})
	want := map[string][]string{
		"probabilities": {"[0.5,0.25,0.25]", "[0,1,0]"},
		"label":         {"0", "1"},
		"class":         {`"setosa"`, `"\"quoted\""`},
	}
	for _, tensor := range []Tensor{probabilities, label, class} {
		w, err := NewRowWriter(tensor)
		require.NoError(t, err)
		require.Equal(t, 2, w.Rows())
		for i, line := range want[tensor.Name] {
			got, err := w.AppendRow([]byte("x"), i)
			require.NoError(t, err)
			require.Equal(t, "x"+line, string(got), "%s row %d", tensor.Name, i)
		}
		_, err = w.AppendRow(nil, 2)
		require.ErrorContains(t, err, "has 2 rows, no row 2")
	}

	nan := mustTensor(t, "y", []int64{2, 1}, []float64{1, math.NaN()})
	w, err := NewRowWriter(nan)
	require.NoError(t, err)
	got, err := w.AppendRow(nil, 1)
	require.NoError(t, err)
	require.Equal(t, `["NaN"]`, string(got))

	_, err = NewRowWriter(Tensor{Name: "s", Shape: []int64{}, Datatype: FP32, Data: []float32{1}})
	require.ErrorContains(t, err, "is a scalar")
	_, err = NewRowWriter(Tensor{Name: "bad", Shape: []int64{2}, Datatype: FP32, Data: []float32{1}})
	require.ErrorContains(t, err, "does not match")
}
