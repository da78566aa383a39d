package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Feedback is labelled data for a function, the data of a TypeFeedback
// event: rows of features with a label each, or the id of a past request
// whose inputs the prediction log supplies, with a label for each of its rows.
type Feedback struct {
	// RequestID names a past request by the id its answer carried.
	RequestID string `json:"requestId,omitempty"`
	// Features are rows of the model's input, in the model's feature order.
	Features [][]float64 `json:"features,omitempty"`
	// Labels has one label per row.
	Labels []string `json:"labels"`
}

// Limits on one Feedback.
const (
	MaxFeedbackRows = 1000
	maxRequestID    = 256
)

// Validate reports the first field that is wrong, by its name.
func (f Feedback) Validate() error {
	switch {
	case len(f.Labels) == 0:
		return errors.New("labels: want one label per row, got none")
	case len(f.Labels) > MaxFeedbackRows:
		return fmt.Errorf("labels: at most %d rows in one feedback, got %d", MaxFeedbackRows, len(f.Labels))
	case f.RequestID == "" && len(f.Features) != len(f.Labels):
		return fmt.Errorf("features: want one row per label (%d), got %d rows; or give requestId", len(f.Labels), len(f.Features))
	case f.RequestID != "" && len(f.Features) > 0:
		return errors.New("features: give features or requestId, not both")
	case len(f.RequestID) > maxRequestID:
		return fmt.Errorf("requestId: at most %d bytes, got %d", maxRequestID, len(f.RequestID))
	}
	for i, label := range f.Labels {
		if label == "" || len(label) > 256 {
			return fmt.Errorf("labels[%d]: want 1 to 256 bytes, got %d", i, len(label))
		}
	}
	return nil
}

// FeedbackStream keeps each function's feedback on FeedbackSubject, the
// latest 10,000 messages a function (up to 10 million rows).
const FeedbackStream = "SLUICE_FEEDBACK"

// FeedbackSubject is where a function's feedback is published.
func FeedbackSubject(function string) string { return "sluice.feedback." + function }

// EnsureFeedbackStream opens the feedback stream, creating it if it does not exist.
func EnsureFeedbackStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return OpenOrCreateStream(ctx, js, jetstream.StreamConfig{
		Name:              FeedbackStream,
		Description:       "Sluice feedback: labelled rows per function",
		Subjects:          []string{FeedbackSubject("*")},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: 10_000,
		MaxBytes:          sized(ctx, js, 1<<30, 8),
		Duplicates:        10 * time.Minute,
	})
}

// Prediction is what the prediction log keeps of one answered request, for
// feedback that names the request: the rows of its first input, the label
// the model gave each, and the revision that answered.
type Prediction struct {
	ID       string      `json:"id"`
	Revision string      `json:"revision"`
	Features [][]float64 `json:"features"`
	Labels   []string    `json:"labels"`
}

// PredictionsStream is the prediction log of one function: its latest
// 100,000 answers, for a week.
func PredictionsStream(function string) string { return "SLUICE_PREDICTIONS_" + function }

// PredictionSubject is where the prediction of one request is logged: the
// request id is hashed into a subject token, whatever characters it has.
func PredictionSubject(function, requestID string) string {
	sum := sha256.Sum256([]byte(requestID))
	return "sluice.predictions." + function + "." + hex.EncodeToString(sum[:16])
}

// PredictionSubjects matches the logged predictions of function.
func PredictionSubjects(function string) string { return "sluice.predictions." + function + ".*" }

// EnsurePredictionsStream opens a function's prediction log, creating it if it does not exist.
func EnsurePredictionsStream(ctx context.Context, js jetstream.JetStream, function string) (jetstream.Stream, error) {
	name := PredictionsStream(function)
	return OpenOrCreateStream(ctx, js, jetstream.StreamConfig{
		Name:              name,
		Description:       "Sluice prediction log of " + function,
		Subjects:          []string{PredictionSubjects(function)},
		AllowDirect:       true, // a request's prediction is read by its subject alone
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxMsgs:           100_000,
		MaxMsgsPerSubject: 1,
		MaxAge:            7 * 24 * time.Hour,
		MaxBytes:          sized(ctx, js, 256<<20, 64),
		// A prediction lost is feedback that cannot be matched, not a
		// lost request: the log is written in the background, many
		// predictions to a write, not one write before each ack.
		PersistMode: jetstream.AsyncPersistMode,
	})
}

// ErrNoPrediction says the prediction log has no request of that id: it was
// never answered, or is older than the log keeps.
var ErrNoPrediction = errors.New("no such request in the prediction log")

// ReadPrediction reads the logged prediction of a request.
func ReadPrediction(ctx context.Context, js jetstream.JetStream, function, requestID string) (Prediction, error) {
	stream, err := js.Stream(ctx, PredictionsStream(function))
	if err == nil {
		var msg *jetstream.RawStreamMsg
		msg, err = stream.GetLastMsgForSubject(ctx, PredictionSubject(function, requestID))
		if err == nil {
			return decodePrediction(requestID, msg.Data)
		}
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return Prediction{}, fmt.Errorf("request %q: %w", requestID, ErrNoPrediction)
	}
	return Prediction{}, fmt.Errorf("read the prediction of request %q: %w", requestID, err)
}

func decodePrediction(requestID string, data []byte) (Prediction, error) {
	var prediction Prediction
	if err := json.Unmarshal(data, &prediction); err != nil {
		return Prediction{}, fmt.Errorf("read the prediction of request %q: %w", requestID, err)
	}
	return prediction, nil
}
