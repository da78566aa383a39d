package events

import (
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"

	"sluice.dev/sluice/events/oip"
)

// An infer request or response travels in a CloudEvent's data as plain JSON
// (datacontenttype application/json), or in the binary tensor data extension
// (datacontenttype application/octet-stream) with the length of its JSON
// inference header in the ExtensionHeaderLength attribute: the extension's
// Inference-Header-Content-Length, carried as an event attribute. A worker
// answers a binary request that asks for binary outputs in binary, and any
// other request in JSON, so a client that sends JSON always gets JSON.

// ExtensionHeaderLength is the CloudEvent extension attribute that gives the
// length of the JSON inference header of binary data.
const ExtensionHeaderLength = "oipheaderlength"

// Content types of infer data.
const (
	ContentTypeJSON   = "application/json"
	ContentTypeBinary = "application/octet-stream"
)

// SetInferenceData makes body the data of ev: plain JSON when headerLength
// is 0, otherwise a body in the binary tensor data extension whose first
// headerLength bytes are the JSON inference header.
func SetInferenceData(ev *event.Event, body []byte, headerLength int) {
	if headerLength > 0 {
		ev.SetDataContentType(ContentTypeBinary)
		ev.SetExtension(ExtensionHeaderLength, headerLength)
	} else {
		ev.SetDataContentType(ContentTypeJSON)
	}
	ev.DataEncoded = body
}

// InferenceHeaderLength reads ev's ExtensionHeaderLength: 0 when it has
// none, as its data is plain JSON. A value that is not a positive integer is
// a *FieldError naming the attribute.
func InferenceHeaderLength(ev *event.Event) (int64, error) {
	value, ok := ev.Extensions()[ExtensionHeaderLength]
	if !ok {
		return 0, nil
	}
	return headerLength(value)
}

// InferenceHeaderLengthOf reads ExtensionHeaderLength from the headers of a
// binary-mode NATS message, as InferenceHeaderLength reads it from the event,
// for a reader that needs nothing else of the event.
func InferenceHeaderLengthOf(header nats.Header) (int64, error) {
	value := (&natsMessage{header: header}).get(headerPrefix + ExtensionHeaderLength)
	if value == "" {
		return 0, nil
	}
	return headerLength(value)
}

// headerLength checks a value of ExtensionHeaderLength.
func headerLength(value any) (int64, error) {
	length, err := types.ToInteger(value)
	if err != nil || length <= 0 {
		return 0, &oip.FieldError{Field: ExtensionHeaderLength, Problem: fmt.Sprintf("want the length in bytes of the JSON inference header, got %v", value)}
	}
	return int64(length), nil
}

// DecodeRequestData reads the infer request in ev's data, JSON or binary,
// and reports whether it came in binary.
func DecodeRequestData(ev *event.Event, limits oip.Limits) (req *oip.InferenceRequest, binary bool, err error) {
	headerLength, err := InferenceHeaderLength(ev)
	if err != nil {
		return nil, false, err
	}
	if headerLength == 0 {
		req, err = oip.DecodeInferenceRequest(ev.Data(), limits)
		return req, false, err
	}
	req, err = oip.DecodeInferenceRequestBinary(ev.Data(), headerLength, limits)
	return req, true, err
}
