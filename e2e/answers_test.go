package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A legal request whose answer is larger than one NATS message is answered
// in full, synchronously and asynchronously: 300,000 Iris rows, a 4.8 MB
// request and an answer of more than 8 MB.
func TestAnswerLargerThanANATSMessage(t *testing.T) {
	p := startPlatform(t)
	const rows = 300_000
	var data strings.Builder
	for i := range rows {
		if i > 0 {
			data.WriteByte(',')
		}
		data.WriteString("5.1,3.5,1.4,0.2")
	}
	request := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[%d,4],"datatype":"FP32","data":[%s]}]}`, rows, data.String())
	require.Greater(t, len(request), 4<<20)

	code, body := p.post(t, "/v2/models/iris/infer", request, nil)
	require.Equal(t, http.StatusOK, code, "%.300s", body)
	require.Greater(t, len(body), 8<<20, "more than the embedded server's messages carry")
	requireRows(t, body, rows)

	code, body = p.post(t, "/v2/models/iris/infer", request, http.Header{"Prefer": {"respond-async"}, "Idempotency-Key": {"large-async"}})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	requireRows(t, p.awaitResult(t, "/v1/requests/large-async"), rows)
}

// requireRows checks an Iris answer of rows rows.
func requireRows(t *testing.T, body []byte, rows int) {
	t.Helper()
	var answer oipResponse
	require.NoError(t, json.Unmarshal(body, &answer))
	require.Len(t, answer.Outputs, 3)
	for _, output := range answer.Outputs {
		require.Equal(t, int64(rows), output.Shape[0], output.Name)
	}
}
