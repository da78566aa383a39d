package batch

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
)

// BenchmarkClientText measures what the batch client does to every row
// besides waiting for it to be scored, on one core: read and check the rows
// (CSV or JSONL), encode the request, decode an Iris-shaped answer and write
// the JSONL lines to a file. It is the most rows/s a batch can reach on this
// machine whatever the queue and the model cost.
func BenchmarkClientText(b *testing.B) {
	for _, format := range []string{"csv", "jsonl"} {
		b.Run(format, func(b *testing.B) { benchmarkClientText(b, format) })
	}
}

func benchmarkClientText(b *testing.B, format string) {
	const rows, perRequest = 1_000_000, 4096
	dir := b.TempDir()
	path := filepath.Join(dir, "rows."+format)
	writeBenchRows(b, path, format, rows)
	answer, headerLength := irisAnswer(b, perRequest)
	lastAnswer, lastHeaderLength := irisAnswer(b, rows%perRequest)
	in := input{name: "input", datatype: oip.FP32, features: 4}
	b.ResetTimer()
	for range b.N {
		file, err := os.Open(path)
		require.NoError(b, err)
		reader, err := newRowReader(file, format, 4)
		require.NoError(b, err)
		out, err := os.Create(filepath.Join(dir, "out.jsonl"))
		require.NoError(b, err)
		w := bufio.NewWriterSize(out, 256<<10)
		var lines []byte
		for index := 0; ; index++ {
			var c *chunk
			for c == nil || c.rows < perRequest {
				row, err := reader.next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if c == nil {
					c = newChunk(index, "bench", row.Index, perRequest, 4)
				}
				if err := c.add(row, in); err != nil {
					b.Fatal(err)
				}
			}
			if c == nil {
				break
			}
			_, _, err := c.request(in)
			require.NoError(b, err)
			if c.good == perRequest {
				c.resolve(answer, headerLength, nil)
			} else {
				c.resolve(lastAnswer, lastHeaderLength, nil)
			}
			var scored int
			lines, scored, _ = c.render(lines[:0])
			require.Equal(b, c.rows, scored)
			_, err = w.Write(lines)
			require.NoError(b, err)
		}
		require.NoError(b, w.Flush())
		require.NoError(b, out.Close())
		require.NoError(b, file.Close())
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// writeBenchRows writes rows Iris-like rows with ids, as CSV or JSONL.
func writeBenchRows(tb testing.TB, path, format string, rows int) {
	file, err := os.Create(path)
	require.NoError(tb, err)
	w := bufio.NewWriter(file)
	line := "r%d,%.1f,%.1f,%.1f,%.1f\n"
	if format == "csv" {
		fmt.Fprintln(w, "id,sepal_length,sepal_width,petal_length,petal_width")
	} else {
		line = `{"id":"r%d","features":[%.1f,%.1f,%.1f,%.1f]}` + "\n"
	}
	for i := range rows {
		fmt.Fprintf(w, line, i, 4+4*rand.Float32(), 2+2*rand.Float32(), 1+6*rand.Float32(), 0.1+2.4*rand.Float32())
	}
	require.NoError(tb, w.Flush())
	require.NoError(tb, file.Close())
}

// irisAnswer is a binary answer of the demo model's shape for rows rows:
// probabilities FP32 [rows,3], label INT64 [rows], class BYTES [rows].
func irisAnswer(tb testing.TB, rows int) ([]byte, int) {
	classes := []string{"setosa", "versicolor", "virginica"}
	probabilities, labels, names := make([]float32, 3*rows), make([]int64, rows), make([]string, rows)
	for i := range rows {
		a, b := rand.Float32(), rand.Float32()
		probabilities[3*i], probabilities[3*i+1], probabilities[3*i+2] = a*b, a*(1-b), 1-a
		labels[i] = int64(i % 3)
		names[i] = classes[i%3]
	}
	var outputs []oip.Tensor
	for _, t := range []struct {
		name  string
		shape []int64
		data  any
	}{{"probabilities", []int64{int64(rows), 3}, probabilities}, {"label", []int64{int64(rows)}, labels}, {"class", []int64{int64(rows)}, names}} {
		tensor, err := oip.NewTensor(t.name, t.shape, t.data)
		require.NoError(tb, err)
		outputs = append(outputs, tensor)
	}
	body, headerLength, err := oip.AppendInferenceResponseBinary(nil, &oip.InferenceResponse{ModelName: "iris", Outputs: outputs}, func(string) bool { return true })
	require.NoError(tb, err)
	return body, headerLength
}
