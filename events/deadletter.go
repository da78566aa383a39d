package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterStream keeps the requests that were given up: terminated as
// unprocessable, or failed on their last allowed delivery, while nobody was
// waiting for their answer. Each function's dead letters go on DeadLetterSubject.
const DeadLetterStream = "SLUICE_DLQ"

// DeadLetterSubject is where the dead letters of one function are kept.
func DeadLetterSubject(function string) string { return "sluice.dlq." + function }

// deadLetterSubjects matches the dead letters of every function.
const deadLetterSubjects = "sluice.dlq.>"

// Headers a dead letter carries beside the original request's own.
const (
	HeaderDeadReason   = "Sluice-Dead-Reason"
	HeaderDeadFunction = "Sluice-Dead-Function"
	HeaderDeadRevision = "Sluice-Dead-Revision"
	HeaderDeadAttempts = "Sluice-Dead-Attempts"
	// HeaderDeadAt is when the request was given up, in RFC 3339.
	HeaderDeadAt = "Sluice-Dead-At"
	// HeaderDeadSubject is the subject the request was published on; a replay goes back there.
	HeaderDeadSubject = "Sluice-Dead-Subject"
	// HeaderDeadMsgID keeps the request's own Nats-Msg-Id: the dead letter has its own.
	HeaderDeadMsgID = "Sluice-Dead-Msg-Id"
)

const deadHeaderPrefix = "Sluice-Dead-"

// DeadLetter is one given-up request. PublishDeadLetter takes Function,
// Revision, Reason, Attempts and At (now when zero); the rest is filled in
// when a dead letter is read back.
type DeadLetter struct {
	// Seq is the dead letter's sequence in DeadLetterStream.
	Seq      uint64
	Function string
	Revision string
	Reason   string
	// Attempts is how many times the request was delivered.
	Attempts int
	At       time.Time
	// Subject is the request's original subject.
	Subject string
	// Header holds the request's original headers, without the Sluice-Dead-*
	// ones, and Data its body: the request as it was published.
	Header nats.Header
	Data   []byte
}

// EnsureDeadLetterStream opens the dead-letter stream, creating it if it does not exist: a week
// or 256 MiB of dead letters, the oldest dropped first.
func EnsureDeadLetterStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return OpenOrCreateStream(ctx, js, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Sluice requests given up: unprocessable, or out of deliveries",
		Subjects:    []string{deadLetterSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      7 * 24 * time.Hour,
		MaxBytes:    sized(ctx, js, 256<<20, 32),
	})
}

// PublishDeadLetter stores msg, a request of letter.Function, in the
// dead-letter stream with its headers and body unchanged and the
// Sluice-Dead-* headers added. JetStream's own Nats-* headers are left out:
// the request's Nats-Msg-Id is kept in Sluice-Dead-Msg-Id, and the dead
// letter's id names the request's stream and sequence, so that the dead
// letter is not taken for a duplicate of some other request, but publishing
// the same given-up delivery twice stores it once.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, letter DeadLetter) error {
	if err := ValidateName(letter.Function); err != nil {
		return fmt.Errorf("dead letter: function: %w", err)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	at := letter.At
	if at.IsZero() {
		at = time.Now()
	}
	dead := nats.NewMsg(DeadLetterSubject(letter.Function))
	dead.Data = msg.Data()
	for key, values := range msg.Headers() {
		if isJetStreamHeader(key) || isDeadHeader(key) {
			continue
		}
		dead.Header[key] = append([]string(nil), values...)
	}
	if id := msg.Headers().Get(HeaderMsgID); id != "" {
		dead.Header.Set(HeaderDeadMsgID, id)
	}
	dead.Header.Set(HeaderDeadReason, letter.Reason)
	dead.Header.Set(HeaderDeadFunction, letter.Function)
	dead.Header.Set(HeaderDeadRevision, letter.Revision)
	dead.Header.Set(HeaderDeadAttempts, strconv.Itoa(letter.Attempts))
	dead.Header.Set(HeaderDeadAt, at.UTC().Format(time.RFC3339))
	dead.Header.Set(HeaderDeadSubject, msg.Subject())
	dead.Header.Set(HeaderMsgID, "dlq-"+meta.Stream+"-"+strconv.FormatUint(meta.Sequence.Stream, 10))
	if _, err := js.PublishMsg(ctx, dead); err != nil {
		return fmt.Errorf("publish %s: %w", dead.Subject, err)
	}
	return nil
}

// ListDeadLetters returns the dead letters of function, of every function
// when it is empty, oldest first.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, function string) ([]DeadLetter, error) {
	stream, err := deadLetterStream(ctx, js)
	if err != nil {
		return nil, err
	}
	subject := deadLetterSubjects
	if function != "" {
		subject = DeadLetterSubject(function)
	}
	var letters []DeadLetter
	for seq := uint64(1); ; {
		raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return letters, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		letters = append(letters, readDeadLetter(raw))
		seq = raw.Sequence + 1
	}
}

// GetDeadLetter returns the dead letter with sequence seq.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	stream, err := deadLetterStream(ctx, js)
	if err != nil {
		return DeadLetter{}, err
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, deadLetterError(seq, err)
	}
	return readDeadLetter(raw), nil
}

// ReplayDeadLetter publishes the dead letter seq again on its original
// subject with its original headers, then deletes it from the dead-letter
// stream. Its Nats-Msg-Id is the original one with "#replay-<seq>" added, so
// the replay is not dropped as a duplicate of the original request, and a
// replay repeated after a failed delete is stored once.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	stream, err := deadLetterStream(ctx, js)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return deadLetterError(seq, err)
	}
	letter := readDeadLetter(raw)
	if letter.Subject == "" {
		return fmt.Errorf("dead letter %d has no %s header: nowhere to replay it", seq, HeaderDeadSubject)
	}
	msg := nats.NewMsg(letter.Subject)
	msg.Header, msg.Data = letter.Header, letter.Data
	id := raw.Header.Get(HeaderDeadMsgID)
	if id == "" {
		id = "dlq"
	}
	msg.Header.Set(HeaderMsgID, id+"#replay-"+strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("replay dead letter %d to %s: %w", seq, letter.Subject, err)
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("dead letter %d replayed, but not deleted: %w", seq, err)
	}
	return nil
}

// PurgeDeadLetters deletes the dead letters of function, of every function when it is empty.
func PurgeDeadLetters(ctx context.Context, js jetstream.JetStream, function string) error {
	stream, err := deadLetterStream(ctx, js)
	if err != nil {
		return err
	}
	var opts []jetstream.StreamPurgeOpt
	if function != "" {
		opts = append(opts, jetstream.WithPurgeSubject(DeadLetterSubject(function)))
	}
	if err := stream.Purge(ctx, opts...); err != nil {
		return fmt.Errorf("purge dead letters: %w", err)
	}
	return nil
}

func deadLetterStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	stream, err := js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", DeadLetterStream, err)
	}
	return stream, nil
}

// readDeadLetter splits a stored dead letter into its Sluice-Dead-* headers
// and the original request; the request's own Nats-Msg-Id is put back.
func readDeadLetter(raw *jetstream.RawStreamMsg) DeadLetter {
	letter := DeadLetter{
		Seq:      raw.Sequence,
		Function: raw.Header.Get(HeaderDeadFunction),
		Revision: raw.Header.Get(HeaderDeadRevision),
		Reason:   raw.Header.Get(HeaderDeadReason),
		Subject:  raw.Header.Get(HeaderDeadSubject),
		Header:   nats.Header{},
		Data:     raw.Data,
	}
	letter.Attempts, _ = strconv.Atoi(raw.Header.Get(HeaderDeadAttempts))
	letter.At, _ = time.Parse(time.RFC3339, raw.Header.Get(HeaderDeadAt))
	for key, values := range raw.Header {
		if isJetStreamHeader(key) || isDeadHeader(key) {
			continue
		}
		letter.Header[key] = values
	}
	if id := raw.Header.Get(HeaderDeadMsgID); id != "" {
		letter.Header.Set(HeaderMsgID, id)
	}
	return letter
}

func isDeadHeader(key string) bool {
	return len(key) >= len(deadHeaderPrefix) && strings.EqualFold(key[:len(deadHeaderPrefix)], deadHeaderPrefix)
}

// isJetStreamHeader reports whether key is one of JetStream's own headers
// (Nats-Msg-Id, Nats-Expected-*, …), which steer a publish and must not be copied.
func isJetStreamHeader(key string) bool {
	return len(key) >= 5 && strings.EqualFold(key[:5], "Nats-")
}

// ErrNoDeadLetter says there is no dead letter of that sequence.
var ErrNoDeadLetter = errors.New("no such dead letter")

// deadLetterError words the failure to read dead letter seq: one that is
// not there is ErrNoDeadLetter, with what to do.
func deadLetterError(seq uint64, err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrMsgNotFound) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound) {
		return fmt.Errorf("dead letter %d: %w: it was replayed or purged, or never was (`sluice dlq list` shows those there are)", seq, ErrNoDeadLetter)
	}
	return fmt.Errorf("dead letter %d: %w", seq, err)
}
