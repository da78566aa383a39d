package activator_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
)

// TestFeedbackIsCheckedAndKept: labelled rows, or a past request's id with
// its labels, are kept in the feedback stream once; what does not fit the
// model or the prediction log is refused, naming the field.
func TestFeedbackIsCheckedAndKept(t *testing.T) {
	p := startPlatform(t, newSetup())
	_, err := events.EnsurePredictionsStream(t.Context(), p.js, "iris")
	require.NoError(t, err)
	logged, _ := json.Marshal(events.Prediction{ID: "req-7", Revision: "1", Features: [][]float64{{5.1, 3.5, 1.4, 0.2}, {6, 3, 5, 2}}, Labels: []string{"setosa", "setosa"}})
	_, err = p.js.Publish(t.Context(), events.PredictionSubject("iris", "req-7"), logged)
	require.NoError(t, err)

	post := func(body string, header http.Header) response {
		if header == nil {
			header = jsonHeader()
		}
		return p.send(t, p.newRequest(t, http.MethodPost, "/v1/functions/iris/feedback", header, body))
	}
	rows := post(`{"features": [[5.1, 3.5, 1.4, 0.2]], "labels": ["setosa"]}`, nil)
	require.Equal(t, http.StatusAccepted, rows.status, string(rows.body))
	require.Contains(t, string(rows.body), `"rows":1`)
	byID := post(`{"requestId": "req-7", "labels": ["setosa", "virginica"]}`, http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"fb-1"}})
	require.Equal(t, http.StatusAccepted, byID.status, string(byID.body))
	again := post(`{"requestId": "req-7", "labels": ["setosa", "virginica"]}`, http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"fb-1"}})
	require.Equal(t, http.StatusAccepted, again.status, "the same feedback sent twice is accepted and kept once")

	ce := binaryHeader(map[string]string{"Ce-Type": events.TypeFeedback, "Ce-Id": "fb-ce"})
	event := p.send(t, p.newRequest(t, http.MethodPost, "/", ce, `{"features": [[6.3, 3.3, 6.0, 2.5]], "labels": ["virginica"]}`))
	require.Equal(t, http.StatusAccepted, event.status, string(event.body))

	errorMessage(t, post(`{"features": [[1, 2, 3]], "labels": ["setosa"]}`, nil), http.StatusBadRequest, "features[0]: want 4 values", "got 3")
	errorMessage(t, post(`{"labels": ["setosa"]}`, nil), http.StatusBadRequest, "features: want one row per label (1), got 0 rows")
	errorMessage(t, post(`{"requestId": "req-7", "labels": ["setosa"]}`, nil), http.StatusBadRequest, `labels: request "req-7" had 2 rows, got 1 labels`)
	errorMessage(t, post(`{"requestId": "never", "labels": ["setosa"]}`, nil), http.StatusNotFound, "requestId", `request "never"`)
	errorMessage(t, post(`{"label": "setosa"}`, nil), http.StatusBadRequest, `unknown field "label"`)
	errorMessage(t, p.send(t, p.newRequest(t, http.MethodPost, "/v1/functions/nope/feedback", jsonHeader(), `{"features": [[1]], "labels": ["a"]}`)), http.StatusNotFound, `model "nope" is not deployed`)

	stream, err := p.js.Stream(t.Context(), events.FeedbackStream)
	require.NoError(t, err)
	info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(events.FeedbackSubject("iris")))
	require.NoError(t, err)
	require.EqualValues(t, 3, info.State.Subjects[events.FeedbackSubject("iris")])
	kept, err := stream.GetMsg(t.Context(), 2)
	require.NoError(t, err)
	ev, err := events.ReadEvent(t.Context(), nats.Header(kept.Header), kept.Data)
	require.NoError(t, err)
	require.Equal(t, events.TypeFeedback, ev.Type())
	var feedback events.Feedback
	require.NoError(t, json.Unmarshal(ev.Data(), &feedback))
	require.Equal(t, events.Feedback{RequestID: "req-7", Labels: []string{"setosa", "virginica"}}, feedback)
}
