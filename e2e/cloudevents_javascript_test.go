package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// toEventJS reads an HTTP answer with the CloudEvents JavaScript SDK's
// HTTP.toEvent, unchanged, as a JavaScript client of Sluice would.
const toEventJS = `
const { HTTP } = require(process.env.SLUICE_CLOUDEVENTS_JS);
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const answer = JSON.parse(input);
  const event = HTTP.toEvent({ headers: answer.headers, body: answer.body });
  console.log(JSON.stringify({ type: event.type, requestid: event.requestid, data: event.data }));
});
`

// A JavaScript CloudEvents client reads every answer to a request
// CloudEvent as an event: the response, the 202 of an asynchronous request,
// and an error with its message.
func TestTheCloudEventsJavaScriptSDKReadsEveryAnswer(t *testing.T) {
	sdk := os.Getenv("SLUICE_CLOUDEVENTS_JS")
	if _, err := os.Stat(sdk); sdk == "" || err != nil {
		t.Fatalf("the CloudEvents JavaScript SDK is missing (%q): make deps installs it", sdk)
	}
	p := startPlatform(t)
	read := func(id, model string, header http.Header) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, p.url+"/", strings.NewReader(irisRequest))
		require.NoError(t, err)
		req.Header = http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {id}, "Ce-Source": {"/js"}, "Ce-Type": {"dev.sluice.inference.request"},
			"Ce-Model": {model}, "Content-Type": {"application/json"}}
		for key, values := range header {
			req.Header[key] = values
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		headers := map[string]string{}
		for key, values := range resp.Header {
			headers[strings.ToLower(key)] = values[0]
		}
		input, err := json.Marshal(map[string]any{"headers": headers, "body": string(body)})
		require.NoError(t, err)
		node := exec.Command("node", "-e", toEventJS)
		node.Stdin = strings.NewReader(string(input))
		out, err := node.CombinedOutput()
		require.NoError(t, err, "the JavaScript SDK could not read the %d answer as an event: %s", resp.StatusCode, out)
		var event map[string]any
		require.NoError(t, json.Unmarshal(out, &event), "%s", out)
		return resp.StatusCode, event
	}

	code, event := read("js-1", "irs", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "dev.sluice.inference.error", event["type"])
	require.Equal(t, "js-1", event["requestid"])
	require.Contains(t, event["data"].(map[string]any)["error"], `model "irs" is not deployed`)

	code, event = read("js-2", "iris", http.Header{"Prefer": {"respond-async"}})
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, "dev.sluice.inference.accepted", event["type"])
	require.Equal(t, "/v1/requests/js-2?source=%2Fjs", event["data"].(map[string]any)["location"])

	code, event = read("js-3", "iris", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "dev.sluice.inference.response", event["type"])
	require.Equal(t, "js-3", event["requestid"])
}
