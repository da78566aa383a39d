package events_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
)

func TestResultsKeepTheirAnswerAsItIs(t *testing.T) {
	at := time.Date(2026, 11, 24, 1, 2, 3, 0, time.UTC)
	binary := append([]byte(`{"outputs":[{"name":"label","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}}]}`), 2, 0, 0, 0, 0, 0, 0, 0)
	tests := map[string]events.Result{
		"JSON answer":   {ID: "a", Source: "/s", Function: "iris", Status: events.ResultDone, Code: http.StatusOK, Response: json.RawMessage(`{"outputs":[]}`), SubmittedAt: at},
		"binary answer": {ID: "b", Source: "/s", Function: "iris", Status: events.ResultDone, Code: http.StatusOK, Binary: binary, HeaderLength: len(binary) - 8},
		"error":         {ID: "c", Source: "/s", Function: "iris", Status: events.ResultError, Code: http.StatusBadRequest, Error: "line one\nline two"},
		"pending":       {ID: "d", Source: "/s", Function: "iris", Status: events.ResultPending, SubmittedAt: at},
	}
	for name, result := range tests {
		t.Run(name, func(t *testing.T) {
			data := events.EncodeResult(result)
			answer, _ := result.Answer()
			require.Equal(t, string(answer), string(data[len(data)-len(answer):]), "the answer is kept as it is, at the end")
			got, err := events.DecodeResult(data)
			require.NoError(t, err)
			require.Equal(t, result, got)
		})
	}

	// A result kept as one JSON object, answer included, still reads.
	legacy, err := json.Marshal(tests["binary answer"])
	require.NoError(t, err)
	got, err := events.DecodeResult(legacy)
	require.NoError(t, err)
	require.Equal(t, tests["binary answer"], got)

	_, err = events.DecodeResult([]byte("not json\n{}"))
	require.ErrorContains(t, err, "decode result")
}

// The line of fields reads as what encoding/json writes for them, whatever
// the strings hold.
func TestResultFieldsReadAsEncodingJSONWritesThem(t *testing.T) {
	at := time.Date(2026, 11, 24, 1, 2, 3, 456789000, time.FixedZone("CET", 3600))
	for _, text := range []string{"plain", `a "quoted" \ back`, "tab\tnew\nline\r\x00\x1f\x7f", "<&>", "é ✓ \u2028\u2029", "bad \xff\xfe utf-8"} {
		result := events.Result{ID: text, Source: text, Function: text, Revision: text, Status: events.ResultError,
			Code: http.StatusInternalServerError, Object: text, Error: text, SubmittedAt: at, CompletedAt: at.Add(time.Nanosecond)}
		meta, _, split := bytes.Cut(events.EncodeResult(result), []byte{'\n'})
		require.True(t, split, "the fields are one line")
		want, err := json.Marshal(result)
		require.NoError(t, err)
		var got, expected map[string]any
		require.NoError(t, json.Unmarshal(meta, &got), "%s", meta)
		require.NoError(t, json.Unmarshal(want, &expected))
		require.Equal(t, expected, got, "%q", text)
	}
}

// BenchmarkAppendResult encodes the record of a one-row asynchronous answer,
// as a worker does for each request it records.
func BenchmarkAppendResult(b *testing.B) {
	at := time.Date(2026, 11, 24, 1, 2, 3, 456789, time.UTC)
	answer := []byte(`{"model_name":"iris","model_version":"1","outputs":[{"name":"label","shape":[1],"datatype":"INT64","data":[0]}]}`)
	result := events.Result{ID: "2Xb7oQnQ3kRk6vV3n1Xh9c", Source: "/sluice/activator", Function: "iris", Revision: "1",
		Status: events.ResultDone, Code: http.StatusOK, Response: answer, SubmittedAt: at, CompletedAt: at.Add(time.Millisecond)}
	var buffer []byte
	b.ReportAllocs()
	for b.Loop() {
		buffer = events.AppendResult(buffer[:0], result)
	}
}
