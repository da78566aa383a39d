package events_test

import (
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
			data, err := events.EncodeResult(result)
			require.NoError(t, err)
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
