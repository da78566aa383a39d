package events

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// The CloudEvents NATS protocol binding: in binary mode every context
// attribute is a header named ce-<attribute>, datacontenttype is the
// content-type header, and the data is the message body. Structured mode
// carries the whole event as JSON with content-type application/cloudevents+json.
const (
	headerPrefix      = "ce-"
	headerContentType = "content-type"
)

var prefixedSpecs = spec.WithPrefix(headerPrefix)

// WriteEvent writes ev onto msg in binary mode: attributes as headers, data
// as body. The body is the event's data itself, not a copy: whoever wrote
// the data leaves it as it is until msg is published.
func WriteEvent(ctx context.Context, msg *nats.Msg, ev *event.Event) error {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	if _, err := binding.Write(ctx, (*binding.EventMessage)(ev), nil, &natsWriter{msg: msg}); err != nil {
		return fmt.Errorf("cloudevent %s to nats: %w", ev.ID(), err)
	}
	msg.Data = ev.Data() // not what the SDK hands natsWriter.SetData: a reader, to copy from
	return nil
}

// ReadEvent reads a CloudEvent from a NATS message's headers and body, in
// binary or structured mode, and validates its required attributes. In
// binary mode the event's data is data itself, not a copy: a request of
// megabytes is not copied again on its way to the model.
func ReadEvent(ctx context.Context, header nats.Header, data []byte) (*event.Event, error) {
	message := &natsMessage{header: header, data: data}
	ev, err := binding.ToEvent(ctx, message)
	if err != nil {
		return nil, fmt.Errorf("cloudevent: %w", err)
	}
	if message.dataAliased {
		ev.DataEncoded = data
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("cloudevent: %w", err)
	}
	return ev, nil
}

// natsMessage is a binding.MessageReader over a received NATS message.
type natsMessage struct {
	header nats.Header
	data   []byte
	// dataAliased says ReadBinary left the data out, for ReadEvent to set.
	dataAliased bool
}

func (m *natsMessage) get(name string) string {
	if values := m.header[name]; len(values) > 0 { // as WriteEvent writes it: no scan
		return values[0]
	}
	for key, values := range m.header {
		if strings.EqualFold(key, name) && len(values) > 0 {
			return values[0]
		}
	}
	return ""
}

func (m *natsMessage) ReadEncoding() binding.Encoding {
	if format.Lookup(m.get(headerContentType)) != nil {
		return binding.EncodingStructured
	}
	if m.get(headerPrefix+"specversion") != "" {
		return binding.EncodingBinary
	}
	return binding.EncodingUnknown
}

func (m *natsMessage) ReadStructured(ctx context.Context, writer binding.StructuredWriter) error {
	f := format.Lookup(m.get(headerContentType))
	if f == nil {
		return binding.ErrNotStructured
	}
	return writer.SetStructuredEvent(ctx, f, bytes.NewReader(m.data))
}

func (m *natsMessage) ReadBinary(ctx context.Context, writer binding.BinaryWriter) error {
	version := prefixedSpecs.Version(m.get(headerPrefix + "specversion"))
	if version == nil {
		return fmt.Errorf("unsupported specversion %q", m.get(headerPrefix+"specversion"))
	}
	for key, values := range m.header {
		if len(values) == 0 {
			continue
		}
		lower := strings.ToLower(key)
		switch {
		case lower == headerContentType:
			if err := writer.SetAttribute(version.AttributeFromKind(spec.DataContentType), values[0]); err != nil {
				return err
			}
		case strings.HasPrefix(lower, headerPrefix):
			var err error
			if attr := version.Attribute(lower); attr != nil {
				err = writer.SetAttribute(attr, values[0])
			} else {
				err = writer.SetExtension(strings.TrimPrefix(lower, headerPrefix), values[0])
			}
			if err != nil {
				return err
			}
		}
	}
	m.dataAliased = len(m.data) > 0 // the SDK would copy it through a reader
	return nil
}

func (m *natsMessage) Finish(error) error { return nil }

// GetAttribute reads one context attribute, for binding.MessageMetadataReader.
func (m *natsMessage) GetAttribute(kind spec.Kind) (spec.Attribute, any) {
	version := prefixedSpecs.Version(m.get(headerPrefix + "specversion"))
	if version == nil {
		return nil, nil
	}
	attr := version.AttributeFromKind(kind)
	if attr == nil {
		return nil, nil
	}
	name := attr.PrefixedName()
	if kind == spec.DataContentType {
		name = headerContentType
	}
	if value := m.get(name); value != "" {
		return attr, value
	}
	return attr, nil
}

// GetExtension reads one extension attribute, for binding.MessageMetadataReader.
func (m *natsMessage) GetExtension(name string) any {
	if value := m.get(headerPrefix + name); value != "" {
		return value
	}
	return nil
}

// natsWriter is a binding.BinaryWriter onto an outgoing NATS message.
type natsWriter struct{ msg *nats.Msg }

func (w *natsWriter) Start(context.Context) error { return nil }
func (w *natsWriter) End(context.Context) error   { return nil }

func (w *natsWriter) SetAttribute(attr spec.Attribute, value any) error {
	text, err := types.Format(value)
	if err != nil {
		return err
	}
	if attr.Kind() == spec.DataContentType {
		w.msg.Header.Set(headerContentType, text)
		return nil
	}
	w.msg.Header.Set(headerPrefix+attr.Name(), text)
	return nil
}

func (w *natsWriter) SetExtension(name string, value any) error {
	text, err := types.Format(value)
	if err != nil {
		return err
	}
	w.msg.Header.Set(headerPrefix+name, text)
	return nil
}

// SetData leaves the body to WriteEvent, which sets the event's data itself.
func (w *natsWriter) SetData(io.Reader) error { return nil }
