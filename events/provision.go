package events

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// QueueConfig bounds the buffer of one function and says how its messages are redelivered.
type QueueConfig struct {
	// MaxMsgs and MaxBytes bound the stream; when full, new requests are refused
	// (discard new) and the activator answers 429.
	MaxMsgs  int64
	MaxBytes int64
	// Duplicates is the window in which a request with the same id is stored once.
	Duplicates time.Duration
	// AckWait is how long a request may go without word from the worker
	// that holds it before it goes to another: short, so that the requests
	// of a worker that died move on within seconds; a live worker says it is
	// still at work every fifth of it (InProgress), however long it takes.
	AckWait time.Duration
	// MaxDeliver is how many times a request is tried before it is given up.
	MaxDeliver int
	// MaxAckPending bounds the requests handed out and not yet settled.
	MaxAckPending int
	// Replicas of the stream: 1 on one machine, 3 on a cluster.
	Replicas int
}

// replicas is how many copies JetStream keeps of each stream and bucket
// Sluice makes: 1 on one server, 3 on a cluster of three.
var replicas atomic.Int32

func init() { replicas.Store(1) }

// SetReplicas sets, once at start (the binary's --nats-replicas), how many
// copies JetStream keeps of every stream and bucket made from then on.
func SetReplicas(n int) error {
	if n < 1 || n > 5 {
		return fmt.Errorf("replicas: want 1 to 5, got %d", n)
	}
	replicas.Store(int32(n))
	return nil
}

// sized is bound (-1: none), or a 1/share of the file storage the account
// may use when that is less (sluice up bounds it: see
// access.Authority.Trust), so that every stream fits: JetStream reserves
// each stream's MaxBytes, and refuses a stream that does not fit.
func sized(ctx context.Context, js jetstream.JetStream, bound, share int64) int64 {
	maxStore := accountMaxStore(ctx, js)
	if maxStore <= 0 {
		return bound
	}
	fits := max(maxStore/share, 1<<20)
	if bound < 0 {
		return fits
	}
	return min(bound, fits)
}

// maxStores holds, for each JetStream context that asked, the file storage
// its account may use (0: no bound of its own): read once, since a process
// opens several streams at start (a worker five) and the bound is set when
// the account is (sluice up's --max-store).
var maxStores sync.Map

func accountMaxStore(ctx context.Context, js jetstream.JetStream) int64 {
	if known, ok := maxStores.Load(js); ok {
		return known.(int64)
	}
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return 0 // not allowed to know, or NATS away: no bound assumed, not kept
	}
	maxStores.Store(js, max(info.Limits.MaxStore, 0))
	return max(info.Limits.MaxStore, 0)
}

// DefaultQueueConfig is a buffer of 100k requests or 256 MiB (less on a small
// disk: a 64th of what the account may store), whichever comes first.
// JetStream reserves MaxBytes of storage for each function's stream.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		MaxMsgs:       100_000,
		MaxBytes:      256 << 20,
		Duplicates:    2 * time.Minute,
		AckWait:       1500 * time.Millisecond,
		MaxDeliver:    5,
		MaxAckPending: 4096,
		Replicas:      int(replicas.Load()),
	}
}

// Validate reports the first field that is out of range.
func (c QueueConfig) Validate() error {
	switch {
	case c.MaxMsgs <= 0:
		return fmt.Errorf("queue: MaxMsgs must be positive, got %d", c.MaxMsgs)
	case c.MaxBytes <= 0:
		return fmt.Errorf("queue: MaxBytes must be positive, got %d", c.MaxBytes)
	case c.AckWait < time.Second:
		return fmt.Errorf("queue: AckWait must be at least 1s, got %s", c.AckWait)
	case c.MaxDeliver < 1:
		return fmt.Errorf("queue: MaxDeliver must be at least 1, got %d", c.MaxDeliver)
	case c.MaxAckPending < 1:
		return fmt.Errorf("queue: MaxAckPending must be at least 1, got %d", c.MaxAckPending)
	case c.Replicas < 1:
		return fmt.Errorf("queue: Replicas must be at least 1, got %d", c.Replicas)
	}
	return nil
}

// EnsureStream creates or updates the work-queue stream of a function.
func EnsureStream(ctx context.Context, js jetstream.JetStream, function string, cfg QueueConfig) (jetstream.Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName(function),
		Description: "requests of function " + function,
		Subjects:    []string{RequestSubjects(function)},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     cfg.MaxMsgs,
		MaxBytes:    sized(ctx, js, cfg.MaxBytes, 64),
		Duplicates:  cfg.Duplicates,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamName(function), err)
	}
	return stream, nil
}

// MetadataMaxDeliver is the consumer metadata key that holds
// QueueConfig.MaxDeliver. The consumer itself redelivers without limit, so
// that a request is never left in the stream undelivered: a worker that
// receives a request past the limit, which one before it never settled
// (it crashed or ran past the ack wait), gives it up into the dead-letter
// stream without running it, and a dead letter that cannot be stored yet is
// tried again on a later delivery.
const MetadataMaxDeliver = "sluice.dev/max-deliver"

// MaxDeliverOf is the delivery limit of a function's consumer; 0 when it has none.
func MaxDeliverOf(info *jetstream.ConsumerInfo) int {
	if info == nil {
		return 0
	}
	if limit, err := strconv.Atoi(info.Config.Metadata[MetadataMaxDeliver]); err == nil && limit > 0 {
		return limit
	}
	return max(info.Config.MaxDeliver, 0) // a consumer made before the limit moved to the metadata
}

// EnsureConsumer creates or updates the durable pull consumer of one revision.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, function, revision string, cfg QueueConfig) (jetstream.Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	consumer, err := js.CreateOrUpdateConsumer(ctx, StreamName(function), jetstream.ConsumerConfig{
		Durable:       ConsumerName(revision),
		Description:   "revision " + revision + " of function " + function,
		FilterSubject: RequestSubject(function, revision),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1, // the workers give up after cfg.MaxDeliver: see MetadataMaxDeliver
		MaxAckPending: cfg.MaxAckPending,
		Replicas:      cfg.Replicas,
		Metadata:      map[string]string{MetadataMaxDeliver: strconv.Itoa(cfg.MaxDeliver)},
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", ConsumerName(revision), StreamName(function), err)
	}
	return consumer, nil
}

// DeleteStream removes a function's stream, and with it every revision's
// consumer, and its prediction log.
func DeleteStream(ctx context.Context, js jetstream.JetStream, function string) error {
	for _, name := range []string{StreamName(function), PredictionsStream(function)} {
		err := js.DeleteStream(ctx, name)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", name, err)
		}
	}
	return nil
}

// jsStreamStoreFailed is the JetStream API error code for a message the stream refused to store.
const jsStreamStoreFailed jetstream.ErrorCode = 10077

// IsQueueFull reports whether a publish was refused because the function's
// stream is at its MaxMsgs or MaxBytes bound (discard new).
func IsQueueFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsStreamStoreFailed &&
		strings.Contains(apiErr.Description, "maximum")
}

// OpenOrCreateStream returns the stream cfg names, creating it with cfg when
// it does not exist yet. An existing stream is left as it is: a component
// may be allowed to create a stream it uses (events/access) but never to
// change one.
func OpenOrCreateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	cfg.Replicas = cmp.Or(cfg.Replicas, int(replicas.Load()))
	return openOrCreate("stream", cfg.Name,
		func() (jetstream.Stream, error) { return js.Stream(ctx, cfg.Name) },
		func() (jetstream.Stream, error) { return js.CreateStream(ctx, cfg) },
		jetstream.ErrStreamNotFound, jetstream.ErrStreamNameAlreadyInUse)
}

// OpenOrCreateKeyValue is OpenOrCreateStream for a KV bucket.
func OpenOrCreateKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Replicas = cmp.Or(cfg.Replicas, int(replicas.Load()))
	return openOrCreate("bucket", cfg.Bucket,
		func() (jetstream.KeyValue, error) { return js.KeyValue(ctx, cfg.Bucket) },
		func() (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) },
		jetstream.ErrBucketNotFound, jetstream.ErrBucketExists)
}

// OpenOrCreateObjectStore is OpenOrCreateStream for an object store.
func OpenOrCreateObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	cfg.Replicas = cmp.Or(cfg.Replicas, int(replicas.Load()))
	return openOrCreate("object store", cfg.Bucket,
		func() (jetstream.ObjectStore, error) { return js.ObjectStore(ctx, cfg.Bucket) },
		func() (jetstream.ObjectStore, error) { return js.CreateObjectStore(ctx, cfg) },
		jetstream.ErrBucketNotFound, jetstream.ErrBucketExists)
}

// openOrCreate opens what name names, creates it when open finds nothing,
// and opens it again when another process created it meanwhile.
func openOrCreate[T any](what, name string, open, create func() (T, error), notFound, exists error) (T, error) {
	v, err := open()
	if errors.Is(err, notFound) {
		v, err = create()
		if errors.Is(err, exists) {
			v, err = open()
		}
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("open %s %s: %w", what, name, err)
	}
	return v, nil
}

// QueueState is what a function's stream says of its queue: the requests it
// holds (a work queue drops each once acknowledged, so these are the ones
// waiting or held by workers, of every revision) and the last sequence it
// stored.
type QueueState struct{ Msgs, LastSeq uint64 }

// QueueStates reads the state of every function's stream, by function, in
// one list request per 256 streams; each stream's leader answers for its
// own. The answers are read into the few fields wanted rather than through
// jetstream.ListStreams, whose whole StreamInfo decoding was a quarter of
// an autoscaler tick's CPU (BenchmarkTick), and the list is not filtered by
// subject: the server matches the filter against every stream for every
// page, which made a tick over 10,000 functions cost 1.5 CPU-seconds.
func QueueStates(ctx context.Context, js jetstream.JetStream) (map[string]QueueState, error) {
	states := map[string]QueueState{}
	for offset := 0; ; {
		request, err := json.Marshal(streamListRequest{Offset: offset})
		if err != nil {
			return nil, err
		}
		msg, err := js.Conn().RequestWithContext(ctx, jetstreamAPI(js, "STREAM.LIST"), request)
		if err != nil {
			return nil, fmt.Errorf("list the functions' streams: %w", err)
		}
		var page streamListPage
		if err := json.Unmarshal(msg.Data, &page); err != nil {
			return nil, fmt.Errorf("list the functions' streams: %w", err)
		}
		if page.Error != nil {
			return nil, fmt.Errorf("list the functions' streams: %s (%d)", page.Error.Description, page.Error.ErrCode)
		}
		for _, stream := range page.Streams {
			if function, ok := strings.CutPrefix(stream.Config.Name, StreamName("")); ok {
				states[function] = QueueState{Msgs: stream.State.Msgs, LastSeq: stream.State.LastSeq}
			}
		}
		offset += len(page.Streams)
		if len(page.Streams) == 0 || offset >= page.Total {
			return states, nil
		}
	}
}

// streamListRequest and streamListPage are the JetStream API's STREAM.LIST,
// with only what QueueStates reads.
type streamListRequest struct {
	Offset int `json:"offset"`
}

type streamListPage struct {
	Total   int `json:"total"`
	Streams []struct {
		Config struct {
			Name string `json:"name"`
		} `json:"config"`
		State struct {
			Msgs    uint64 `json:"messages"`
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
	} `json:"streams"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// jetstreamAPI is the subject of a JetStream API call of js: under its
// domain or API prefix, when it has one.
func jetstreamAPI(js jetstream.JetStream, call string) string {
	options := js.Options()
	if options.Domain != "" {
		return "$JS." + options.Domain + ".API." + call
	}
	return cmp.Or(options.APIPrefix, jetstream.DefaultAPIPrefix) + call
}
