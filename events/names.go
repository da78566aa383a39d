package events

import (
	"fmt"
	"regexp"
	"strings"
)

// CloudEvent types Sluice produces and consumes. Every type lives under the
// dev.sluice. prefix so a sink can route all of Sluice's events with one filter.
const (
	TypeInferenceRequest  = "dev.sluice.inference.request"
	TypeInferenceResponse = "dev.sluice.inference.response"
	TypeInferenceError    = "dev.sluice.inference.error"
	// TypeInferenceAccepted answers an asynchronous request CloudEvent: its
	// data says where the result is fetched.
	TypeInferenceAccepted = "dev.sluice.inference.accepted"
)

// CloudEvent extension attributes that Sluice defines.
const (
	// ExtensionModel names the function (the OIP model name) a request is for.
	ExtensionModel = "model"
	// ExtensionModelVersion pins a request to one model version (revision).
	ExtensionModelVersion = "modelversion"
	// ExtensionRequestID on a response carries the id of the request event.
	ExtensionRequestID = "requestid"
)

// NATS headers that travel beside the CloudEvent attributes of a request.
const (
	// HeaderReplyTo is the core NATS subject a synchronous caller waits on.
	// JetStream does not keep a message's reply subject, so it travels as a header.
	HeaderReplyTo = "Sluice-Reply-To"
	// HeaderDeadline is when the caller stops waiting, in Unix nanoseconds.
	// A worker drops a request whose deadline has passed instead of scoring it.
	HeaderDeadline = "Sluice-Deadline"
	// HeaderStatus on an error reply is the HTTP status the error maps to.
	HeaderStatus = "Sluice-Status"
	// HeaderMsgID is JetStream's de-duplication header; Sluice sets it to the CloudEvent id.
	HeaderMsgID = "Nats-Msg-Id"
)

// Buckets of the catalog and the model store.
const (
	FunctionsBucket = "sluice-functions"
	ModelsBucket    = "sluice-models"
)

// EventsSubjectPrefix is where lifecycle CloudEvents (model.published, scale.*, …) go.
const EventsSubjectPrefix = "sluice.events"

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateName checks that a function name can be used in subjects, stream
// names and Kubernetes object names: a DNS-1123 label.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%q is not a valid name: want lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", name)
	}
	return nil
}

// RequestSubject is the subject requests for one revision of a function are published on.
func RequestSubject(function, revision string) string {
	return "sluice.fn." + function + ".req." + revision
}

// RequestSubjects matches the requests of every revision of a function.
func RequestSubjects(function string) string { return "sluice.fn." + function + ".req.>" }

// ReplySubject is the core NATS subject where the synchronous caller
// waiting as token in the activator instance replies to a request of
// function. Replies are grouped by function so that a worker may answer its
// own function's callers and no one else's.
func ReplySubject(function, instance, token string) string {
	return "sluice.reply." + function + "." + instance + "." + token
}

// ReplySubjects matches the replies to every caller of function.
func ReplySubjects(function string) string { return "sluice.reply." + function + ".>" }

// InstanceReplies matches every reply to the callers of one activator instance.
func InstanceReplies(instance string) string { return "sluice.reply.*." + instance + ".*" }

// IntegritySubject is where the control plane announces, on core NATS, that
// the model store does not hold the model a revision of function was
// deployed with (TypeModelChanged).
func IntegritySubject(function string) string { return EventsSubjectPrefix + ".integrity." + function }

// ResultSubject is where the results of a function that were recorded are
// announced, on core NATS, for live subscribers.
func ResultSubject(function string) string { return "sluice.fn." + function + ".res" }

// SinkSubject is where the results of a function that go to a sink are
// published, into SinkStream.
func SinkSubject(function string) string { return "sluice.fn." + function + ".sink" }

// FunctionOfSinkSubject is the function whose SinkSubject subject is.
func FunctionOfSinkSubject(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, "sluice.fn.")
	if !ok {
		return "", false
	}
	function, ok := strings.CutSuffix(rest, ".sink")
	return function, ok && !strings.Contains(function, ".")
}

// StreamName is the JetStream stream that buffers a function's requests.
func StreamName(function string) string { return "SLUICE_FN_" + function }

// ConsumerName is the durable pull consumer of one revision of a function.
func ConsumerName(revision string) string { return "rev-" + revision }

// MsgID is the JetStream de-duplication id of a request event. CloudEvents
// are unique by source and id together, so both go in: two producers that
// pick the same id do not shadow each other, and a producer that retries the
// same event is stored once.
func MsgID(source, id string) string { return source + "#" + id }
