package activator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// SinkConfig says how results are delivered to sinks.
type SinkConfig struct {
	// Attempts is how many POSTs a result gets before it is dead-lettered.
	Attempts int
	// FirstBackoff doubles after each failed POST, up to MaxBackoff.
	FirstBackoff, MaxBackoff time.Duration
	// Timeout bounds one POST.
	Timeout time.Duration
	// Concurrency bounds the POSTs in flight.
	Concurrency int
	// ResultTTL is how long result announcements are kept for delivery.
	ResultTTL time.Duration
	// Allow names the non-public addresses sinks may have (functions.SinkAllowList).
	Allow functions.SinkAllowList
}

// DefaultSinkConfig tries 5 times, after 1s, 2s, 4s and 8s.
func DefaultSinkConfig() SinkConfig {
	return SinkConfig{Attempts: 5, FirstBackoff: time.Second, MaxBackoff: time.Minute, Timeout: 10 * time.Second,
		Concurrency: 16, ResultTTL: events.DefaultResultTTL}
}

// Validate reports what is wrong with the configuration.
func (c SinkConfig) Validate() error {
	if c.Attempts < 1 || c.Concurrency < 1 || c.FirstBackoff <= 0 || c.MaxBackoff < c.FirstBackoff || c.Timeout <= 0 || c.ResultTTL <= 0 {
		return fmt.Errorf("sink delivery: want Attempts, Concurrency >= 1, 0 < FirstBackoff <= MaxBackoff, Timeout > 0 and ResultTTL > 0, got %+v", c)
	}
	return nil
}

// sinkConsumer is the durable consumer every activator shares to deliver results.
const sinkConsumer = "sink-delivery"

// Sinks delivers the results that name a sink (header Sluice-Sink-URI) as
// CloudEvents by HTTP POST, from the sink stream: a POST that
// fails is retried with exponential backoff, and a result whose last attempt
// failed goes to the dead-letter stream.
type Sinks struct {
	js jetstream.JetStream
	// answers holds the results too large for one message; opened by Run.
	answers jetstream.ObjectStore
	client  *http.Client
	cfg     SinkConfig
	log     *slog.Logger
}

// NewSinks returns the sink delivery; Run starts it.
func NewSinks(js jetstream.JetStream, cfg SinkConfig, log *slog.Logger) (*Sinks, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sinks{js: js, client: sinkClient(cfg), cfg: cfg, log: log}, nil
}

// sinkClient POSTs to sinks. Every connection is checked against cfg.Allow
// when it is made, after the name is resolved, so neither a name that
// resolves inside the network nor a redirect reaches what a caller may not
// name; redirects are not followed, and no proxy is used.
func sinkClient(cfg SinkConfig) *http.Client {
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: func(_, address string, _ syscall.RawConn) error {
		addrPort, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		return cfg.Allow.CheckAddr(addrPort.Addr())
	}}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.DialContext = dialer.DialContext
	return &http.Client{
		Timeout: cfg.Timeout, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run delivers until ctx ends, then finishes the POSTs in flight.
func (s *Sinks) Run(ctx context.Context) error {
	if _, err := events.EnsureSinkStream(ctx, s.js, s.cfg.ResultTTL); err != nil {
		return err
	}
	if _, err := events.EnsureDeadLetterStream(ctx, s.js); err != nil {
		return err
	}
	answers, err := events.EnsureAnswersStore(ctx, s.js, s.cfg.ResultTTL)
	if err != nil {
		return err
	}
	s.answers = answers
	consumer, err := s.js.CreateOrUpdateConsumer(ctx, events.SinkStream, jetstream.ConsumerConfig{
		Durable:       sinkConsumer,
		Description:   "delivers results to their sinks",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * s.cfg.Timeout,
		MaxDeliver:    -1, // handle gives up after Attempts: a result is never left undelivered in the stream
		MaxAckPending: 4 * s.cfg.Concurrency,
	})
	if err != nil {
		return fmt.Errorf("sink delivery: consumer: %w", err)
	}
	slots := make(chan struct{}, s.cfg.Concurrency)
	var inFlight sync.WaitGroup
	consume, err := consumer.Consume(func(msg jetstream.Msg) {
		slots <- struct{}{}
		inFlight.Add(1)
		go func() {
			defer func() { <-slots; inFlight.Done() }()
			s.handle(msg)
		}()
	})
	if err != nil {
		return fmt.Errorf("sink delivery: consume: %w", err)
	}
	<-ctx.Done()
	consume.Drain()
	<-consume.Closed()
	inFlight.Wait()
	return nil
}

// handle delivers one result, and settles it: ack once delivered (or when it
// names no sink), nak with backoff after a failed POST, dead-letter after the last.
func (s *Sinks) handle(msg jetstream.Msg) {
	sink := msg.Headers().Get(events.HeaderSinkURI)
	if sink == "" {
		_ = msg.Ack()
		return
	}
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	if meta.NumDelivered > uint64(s.cfg.Attempts) { // the last attempt was never settled
		s.deadLetter(msg, sink, uint64(s.cfg.Attempts), errLastAttemptUnsettled)
		return
	}
	err = s.post(sink, msg)
	switch {
	case err == nil:
		_ = msg.Ack()
	case errors.Is(err, functions.ErrSinkAddress): // no retry makes it allowed
		s.deadLetter(msg, sink, meta.NumDelivered, err)
	case meta.NumDelivered < uint64(s.cfg.Attempts):
		s.log.Info("sink delivery failed; retrying", "sink", sink, "attempt", meta.NumDelivered, "error", err)
		_ = msg.NakWithDelay(s.backoff(meta.NumDelivered))
	default:
		s.deadLetter(msg, sink, meta.NumDelivered, err)
	}
}

func (s *Sinks) backoff(attempt uint64) time.Duration {
	delay := s.cfg.FirstBackoff
	for i := uint64(1); i < attempt && delay < s.cfg.MaxBackoff; i++ {
		delay *= 2
	}
	return min(delay, s.cfg.MaxBackoff)
}

// post sends the result CloudEvent to sink in binary mode, in a deliver
// span of the request's trace: the event's ce-traceparent names the worker's
// reply, the request's traceparent header this delivery.
func (s *Sinks) post(sink string, msg jetstream.Msg) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	ctx, span := tracer.Start(events.MessageTrace(ctx, msg.Headers()), "deliver", trace.WithSpanKind(trace.SpanKindClient))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	data := msg.Data()
	if name := msg.Headers().Get(events.HeaderAnswerObject); name != "" {
		var err error
		if data, err = events.ReadAnswer(ctx, s.answers, name, false); err != nil {
			return err
		}
	}
	ev, err := events.ReadEvent(ctx, msg.Headers(), data)
	if err != nil {
		return err
	}
	req, err := cehttp.NewHTTPRequestFromEvent(ctx, sink, *ev)
	if err != nil {
		return err
	}
	events.InjectTrace(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("sink answered %s", resp.Status)
	}
	return nil
}

// deadLetter moves a result whose last delivery failed to the dead-letter
// stream; if that fails too, the result stays for another try.
func (s *Sinks) deadLetter(msg jetstream.Msg, sink string, attempts uint64, cause error) {
	function, _ := events.FunctionOfSinkSubject(msg.Subject())
	reason := fmt.Sprintf("%v to %s after %d attempts: %v", errSinkFailed, sink, attempts, cause)
	letter := events.DeadLetter{Function: function, Reason: reason, Attempts: int(attempts)}
	if err := events.PublishDeadLetter(context.Background(), s.js, msg, letter); err != nil {
		s.log.Warn("dead-letter a result", "sink", sink, "error", err)
		_ = msg.NakWithDelay(s.cfg.MaxBackoff)
		return
	}
	s.log.Warn("result dead-lettered", "sink", sink, "attempts", attempts, "error", cause)
	_ = msg.Term()
}

var (
	errSinkFailed           = errors.New("sink delivery failed")
	errLastAttemptUnsettled = errors.New("the last attempt was never settled: its dead letter could not be stored, or the activator stopped")
)
