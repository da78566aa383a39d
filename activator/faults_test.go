package activator_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sluice.dev/sluice/events"
)

// slowRequest opens a connection and sends an infer request's headers and
// the first byte of its body, then nothing more.
func slowRequest(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "POST /v2/models/iris/infer HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%c", len(irisBody), irisBody[0])
	require.NoError(t, err)
	return conn
}

// Bodies that trickle in hold no in-flight slot: with every slot's worth of
// them open, a caller whose body arrives is still served, and the trickling
// ones get 408 once BodyTimeout has passed.
func TestSlowBodiesTakeNoSlot(t *testing.T) {
	s := newSetup()
	s.config.MaxInFlight = 2
	s.config.BodyTimeout = time.Second
	p := startPlatform(t, s)
	slow := make([]net.Conn, 2*s.config.MaxInFlight)
	for i := range slow {
		slow[i] = slowRequest(t, p.run.addr)
	}
	time.Sleep(100 * time.Millisecond) // their headers are read, their bodies are not

	answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", jsonHeader(), irisBody))
	reply(t, p.js, takeRequest(t, p.js), 0, irisAnswer)
	require.Equal(t, http.StatusOK, receive(t, answers).status, "a whole request is served while bodies trickle in")

	for _, conn := range slow {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	}
}

// One client address keeps at most MaxConnsPerClient connections open; one
// more is closed as it comes and counted, and once one closes another is let in.
func TestConnectionsPerClientAreBounded(t *testing.T) {
	s := newSetup()
	s.config.MaxConnsPerClient = 3
	p := startPlatform(t, s)
	held := make([]net.Conn, s.config.MaxConnsPerClient)
	for i := range held {
		held[i] = slowRequest(t, p.run.addr)
	}
	refused := slowRequest(t, p.run.addr)
	require.NoError(t, refused.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := refused.Read(make([]byte, 1))
	require.Error(t, err, "a connection past the bound is closed")
	require.Eventually(t, func() bool {
		return counter(t, p.metrics, "sluice_activator_refused_connections_total", nil) == 1
	}, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, held[0].Close())
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.url + "/v2/health/live")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 50*time.Millisecond, "a closed connection gives its place back")
}

// A request whose stream cannot store it for a while (no stream leader:
// here, no stream at all for a second) is published again until it can,
// and the caller sees a slower answer, not an error.
func TestRequestsWaitForTheirStreamToAnswerAgain(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			s := newSetup()
			p := startPlatform(t, s)
			ctx := t.Context()
			stream, err := p.js.Stream(ctx, events.StreamName("iris"))
			require.NoError(t, err)
			config := stream.CachedInfo().Config
			require.NoError(t, p.js.DeleteStream(ctx, config.Name))
			header := jsonHeader()
			if async {
				header.Set("Prefer", "respond-async")
			}
			answers := p.sendAsync(p.newRequest(t, http.MethodPost, "/v2/models/iris/infer", header, irisBody))
			time.Sleep(time.Second)
			_, err = p.js.CreateStream(ctx, config)
			require.NoError(t, err)
			_, err = events.EnsureConsumer(ctx, p.js, "iris", "1", s.queue)
			require.NoError(t, err)
			if async {
				require.Equal(t, http.StatusAccepted, receive(t, answers).status)
				require.Equal(t, uint64(1), p.queued(t))
				return
			}
			reply(t, p.js, takeRequest(t, p.js), 0, irisAnswer)
			require.Equal(t, http.StatusOK, receive(t, answers).status)
		})
	}
}
