package batch

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

func readAll(t *testing.T, format, text string, features int) []Row {
	t.Helper()
	reader, err := newRowReader(strings.NewReader(text), format, features)
	require.NoError(t, err)
	var rows []Row
	for {
		row, err := reader.next()
		if errors.Is(err, io.EOF) {
			return rows
		}
		require.NoError(t, err)
		row.ID, row.Features = slices.Clone(row.ID), slices.Clone(row.Features) // the reader reuses them
		rows = append(rows, row)
	}
}

func TestRowReaders(t *testing.T) {
	tests := []struct {
		name, format, text string
		wantLines          []int
		wantBad            []string // "" for a good row
	}{
		{"csv with id", "csv", "id,a,b\nx,1,2\ny,1,zz\nz,1\nw,3,4\n", []int{2, 3, 4, 5}, []string{"", `column 3: "zz"`, "2 fields", ""}},
		{"csv without id", "csv", "a,b\n1,2\nNaN,2\n", []int{2, 3}, []string{"", "not a finite number"}},
		{"jsonl", "jsonl", "[1,2]\n\n{\"id\":7,\"features\":[3,4]}\n[1]\nhello\n{\"id\":1}\n", []int{1, 3, 4, 5, 6}, []string{"", "", "1 features", "want a JSON array", "features: missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := readAll(t, tt.format, tt.text, 2)
			require.Len(t, rows, len(tt.wantBad))
			for i, row := range rows {
				require.Equal(t, i, row.Index)
				require.Equal(t, tt.wantLines[i], row.Line, "row %d", i)
				if tt.wantBad[i] == "" {
					require.NoError(t, row.Err, "row %d", i)
					require.Len(t, row.Features, 2)
				} else {
					require.ErrorContains(t, row.Err, tt.wantBad[i], "row %d", i)
				}
			}
		})
	}
}

func TestCSVHeaderMustFitTheModel(t *testing.T) {
	_, err := newRowReader(strings.NewReader("id,a,b,c\n"), "csv", 4)
	require.ErrorContains(t, err, "3 feature columns, the model takes 4")
}

func TestOutputCutsATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	require.NoError(t, os.WriteFile(path, []byte("{\"row\":0}\n{\"row\":1}\n{\"row\":2,\"outp"), 0o644))
	out, lines, err := openOutput(path, time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, lines)
	require.NoError(t, out.write([]byte("{\"row\":2}\n")))
	require.NoError(t, out.close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "{\"row\":0}\n{\"row\":1}\n{\"row\":2}\n", string(data))
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	require.ErrorContains(t, cfg.Validate(), "Function")
	cfg.Function, cfg.Input, cfg.Output = "iris", "in.csv", "out.jsonl"
	require.NoError(t, cfg.Validate())
	cfg.InFlight = 0
	require.ErrorContains(t, cfg.Validate(), "InFlight")
}

func TestAutoRowsKeepsRequestsSmall(t *testing.T) {
	require.Equal(t, 4096, autoRows(input{datatype: oip.FP32, features: 4}), "iris: the cap")
	require.Equal(t, 655, autoRows(input{datatype: oip.FP32, features: 100}))
	require.Equal(t, 64, autoRows(input{datatype: oip.FP64, features: 10_000}), "the floor")
	require.Equal(t, 4096, autoRows(input{datatype: oip.Int64, features: 0}), "any feature count")
}
