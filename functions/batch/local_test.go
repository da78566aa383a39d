package batch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

// sumModel answers each row with the sum of its features.
type sumModel struct{}

func (sumModel) Run(inputs []oip.Tensor) ([]oip.Tensor, error) {
	data := inputs[0].Data.([]float32)
	rows, features := inputs[0].Shape[0], inputs[0].Shape[1]
	sums := make([]float32, rows)
	for i := range rows {
		for k := range features {
			sums[i] += data[i*features+k]
		}
	}
	out, err := oip.NewTensor("sum", []int64{rows}, sums)
	return []oip.Tensor{out}, err
}

// The in-process pipeline writes what Run writes: a line per row, in order,
// with its id, its outputs or the error of a bad row; it resumes an output.
func TestRunLocalWritesWhatRunWrites(t *testing.T) {
	dir := t.TempDir()
	input, output := filepath.Join(dir, "rows.csv"), filepath.Join(dir, "out.jsonl")
	require.NoError(t, os.WriteFile(input, []byte("id,a,b\nr0,1,2\nr1,x,2\nr2,3,4\nr3,5,6\nr4,7,8\n"), 0o644))
	signature := oip.Signature{Inputs: []oip.TensorSpec{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 2}}}}
	cfg := DefaultConfig()
	cfg.Input, cfg.Output, cfg.RowsPerRequest = input, output, 2
	report, err := RunLocal(context.Background(), cfg, signature, []Model{sumModel{}, sumModel{}})
	require.NoError(t, err)
	require.Equal(t, 4, report.Scored)
	require.Equal(t, 1, report.Failed)
	data, err := os.ReadFile(output)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 5)
	require.Equal(t, `{"row":0,"id":"r0","outputs":{"sum":3}}`, lines[0])
	require.Contains(t, lines[1], `{"row":1,"line":3,"error":`)
	require.Equal(t, `{"row":4,"id":"r4","outputs":{"sum":15}}`, lines[4])

	require.NoError(t, os.WriteFile(output, []byte(strings.Join(lines[:3], "\n")+"\n{\"row\":3,"), 0o644))
	report, err = RunLocal(context.Background(), cfg, signature, []Model{sumModel{}})
	require.NoError(t, err)
	require.Equal(t, 3, report.Skipped)
	resumed, err := os.ReadFile(output)
	require.NoError(t, err)
	require.Equal(t, string(data), string(resumed), "a resumed output is the same")
}
