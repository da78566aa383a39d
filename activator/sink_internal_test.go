package activator

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions"
)

// A sink's redirect is not followed: it would lead delivery past the address
// check to wherever it points. The redirect is the answer, a failed POST.
func TestSinkDeliveryFollowsNoRedirect(t *testing.T) {
	var reached atomic.Int32
	inside := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	defer inside.Close()
	sink := httptest.NewServer(http.RedirectHandler(inside.URL+"/latest/meta-data/", http.StatusTemporaryRedirect))
	defer sink.Close()
	allow, err := functions.ParseSinkAllowList([]string{"127.0.0.1"})
	require.NoError(t, err)
	client := sinkClient(SinkConfig{Timeout: 5 * time.Second, Allow: allow})

	resp, err := client.Post(sink.URL, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	require.Zero(t, reached.Load())

	_, err = sinkClient(SinkConfig{Timeout: 5 * time.Second}).Post(inside.URL, "application/json", strings.NewReader("{}"))
	require.ErrorIs(t, err, functions.ErrSinkAddress, "without the allow-list, loopback is refused when connecting")
	require.Zero(t, reached.Load())
}
