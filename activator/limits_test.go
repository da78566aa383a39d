package activator_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Ids and headers have limits answered with 4xx before anything is queued,
// not a 503 when JetStream refuses the message's headers.
func TestHeaderLimits(t *testing.T) {
	p := startPlatform(t, newSetup())
	long := strings.Repeat("k", 300)

	oip := p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", http.Header{"Idempotency-Key": {long}}, irisBody)
	errorMessage(t, p.send(t, oip), http.StatusBadRequest, "Idempotency-Key: 300 bytes, at most 256")

	ce := p.newRequest(t, http.MethodPost, "/", binaryHeader(map[string]string{"Ce-Id": long}), irisBody)
	errorMessage(t, p.send(t, ce), http.StatusBadRequest, "id: 300 bytes, at most 256")
	ce = p.newRequest(t, http.MethodPost, "/", binaryHeader(map[string]string{"Ce-Source": "/" + strings.Repeat("s", 2000)}), irisBody)
	errorMessage(t, p.send(t, ce), http.StatusBadRequest, "source: 2001 bytes, at most 1024")

	huge := p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", http.Header{"Sluice-Sink-Uri": {"http://sink/" + strings.Repeat("x", 100<<10)}}, irisBody)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, p.send(t, huge).status)
	require.Zero(t, p.queued(t))
}
