package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Hostile requests against `sluice up`: each gets a clear error, with the
// status that says what is wrong and a body that names it, or is shed; and
// every process stays up and serves the next honest caller.
func TestHostileRequests(t *testing.T) {
	p := startPlatform(t)
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	tensor := func(shape, data string) string {
		return `{"inputs":[{"name":"input","shape":` + shape + `,"datatype":"FP32","data":` + data + `}]}`
	}
	cases := []struct {
		name   string
		path   string
		header http.Header
		body   string
		codes  []int  // any of these
		names  string // what the error must name, when it has a body
	}{
		{name: "shape that overflows int64", path: "/v2/models/iris/infer", body: tensor("[9223372036854775807,4]", "[1]"), codes: []int{400}, names: "shape"},
		{name: "shape whose product overflows", path: "/v2/models/iris/infer", body: tensor("[4294967296,4294967296]", "[1]"), codes: []int{400}, names: "shape"},
		{name: "negative shape", path: "/v2/models/iris/infer", body: tensor("[-1,4]", "[1,2,3,4]"), codes: []int{400}, names: "shape"},
		{name: "data deeper than any shape", path: "/v2/models/iris/infer", body: tensor("[1,4]", deep), codes: []int{400}, names: "data"},
		{name: "parameters nested 100,000 deep", path: "/v2/models/iris/infer", body: `{"parameters":{"a":` + deep + `},"inputs":[]}`, codes: []int{400}},
		{name: "a key of a megabyte", path: "/v2/models/iris/infer", body: `{"` + strings.Repeat("k", 1<<20) + `":1,"inputs":[]}`, codes: []int{400}},
		{name: "a body over the limit", path: "/v2/models/iris/infer", body: tensor("[1,4]", "["+strings.Repeat("1,", 5<<20)+"1]"), codes: []int{413}, names: "limit"},
		{name: "a binary header length past the body", path: "/v2/models/iris/infer", header: http.Header{"Inference-Header-Content-Length": {"999999"}},
			body: tensor("[1,4]", "[1,2,3,4]"), codes: []int{400}, names: "Inference-Header-Content-Length"},
		{name: "binary data shorter than it says", path: "/v2/models/iris/infer", header: http.Header{"Inference-Header-Content-Length": {"99"}},
			body: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}` + "\x00\x00", codes: []int{400}},
		{name: "a model name that is a subject wildcard", path: "/v2/models/iris.%3E/infer", body: tensor("[1,4]", "[1,2,3,4]"), codes: []int{400, 404}},
		{name: "a model name that climbs a path", path: "/v2/models/..%2F..%2Fetc%2Fpasswd/infer", body: tensor("[1,4]", "[1,2,3,4]"), codes: []int{400, 404}},
		{name: "a version that is a subject wildcard", path: "/v2/models/iris/versions/*/infer", body: tensor("[1,4]", "[1,2,3,4]"), codes: []int{400, 404}},
		{name: "a CloudEvent model that is a subject wildcard", path: "/", header: http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"x"}, "Ce-Source": {"/s"},
			"Ce-Type": {"dev.sluice.inference.request"}, "Ce-Model": {"iris.*"}}, body: tensor("[1,4]", "[1,2,3,4]"), codes: []int{400, 404}},
		{name: "a CloudEvent attribute that is not UTF-8", path: "/", header: http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"%FF"}, "Ce-Source": {"/s"},
			"Ce-Type": {"dev.sluice.inference.request"}, "Ce-Model": {"iris"}}, body: tensor("[1,4]", "[1,2,3,4]"), codes: []int{400}, names: "ce-id"},
		{name: "a result id that climbs a path", path: "/v1/requests/..%2F..%2Fsluice-functions", codes: []int{400, 404}},
		{name: "an idempotency key of wildcards and dots", path: "/v2/models/iris/infer", header: http.Header{"Idempotency-Key": {"a.*.>"}},
			body: tensor("[1,4]", "[5.1,3.5,1.4,0.2]"), codes: []int{200, 400}},
		{name: "a header of a megabyte", path: "/v2/models/iris/infer", header: http.Header{"X-Big": {strings.Repeat("h", 1<<20)}},
			body: tensor("[1,4]", "[1,2,3,4]"), codes: []int{431}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := http.MethodPost
			if c.body == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, p.url+c.path, strings.NewReader(c.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			for key, values := range c.header {
				req.Header[key] = values
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Contains(t, c.codes, resp.StatusCode, "%s", body)
			if resp.StatusCode >= 400 && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				require.Contains(t, string(body), `"error"`, "the error is said")
				require.Contains(t, strings.ToLower(string(body)), strings.ToLower(c.names), "the error names what is wrong")
			}
		})
	}

	t.Run("a flood of connections", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, conn := range conns {
				conn.Close()
			}
		}()
		address := strings.TrimPrefix(p.url, "http://")
		for range 1100 { // past the 1,024 one client may keep open
			conn, err := net.Dial("tcp", address)
			require.NoError(t, err)
			conns = append(conns, conn)
		}
		refused := 0
		for _, conn := range conns {
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(conn, "GET /v2/health/live HTTP/1.1\r\nHost: sluice\r\n\r\n")
		}
		for _, conn := range conns {
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil && resp.StatusCode == http.StatusOK {
				continue
			}
			refused++
		}
		require.Positive(t, refused, "connections past the bound are shed")
	})

	require.Empty(t, p.exited, "sluice up is still running")
	code, body := p.post(t, "/v2/models/iris/infer", irisRequest, nil)
	require.Equal(t, http.StatusOK, code, "an honest caller is served after all that: %s", body)
	requireIrisAnswer(t, body)
}
