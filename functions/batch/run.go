package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// job is the state of one Run. The producer goroutine reads rows and
// publishes chunks; the acker goroutine settles asynchronous publishes; the
// writer (Run's own goroutine) writes resolved chunks in order; the NATS
// dispatcher resolves announced chunks. pending is guarded by mu.
type job struct {
	cfg       Config
	js        jetstream.JetStream
	results   jetstream.KeyValue
	subject   string // where requests are published
	source    string // the CloudEvent source of every request
	batchID   string
	input     input
	inputFile *os.File
	rows      rowReader
	out       *output
	done      int // rows already in the output when the run started

	mu      sync.Mutex
	pending map[string]*chunk // by request id: published, not yet resolved

	requests, fromBucket, queueFull, rowsRead atomic.Int64
	report                                    Report
}

// Run scores cfg.Input through cfg.Function and writes cfg.Output, resuming
// an output a previous run left. progress, if not nil, is called with the
// number of rows each written chunk adds. It returns when every row is
// written, or, with what it wrote so far synced and ctx's error, when ctx
// ends; a later Run with the same Config resumes.
func Run(ctx context.Context, js jetstream.JetStream, cfg Config, progress func(rows int)) (Report, error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	j, err := prepare(ctx, js, cfg)
	if err != nil {
		return Report{}, err
	}
	err = j.run(ctx, progress)
	if closeErr := j.close(); err == nil {
		err = closeErr
	}
	return j.finish(start), err
}

// finish is the report of a run that began at start.
func (j *job) finish(start time.Time) Report {
	j.report.BatchID, j.report.RowsPerRequest = j.batchID, j.cfg.RowsPerRequest
	j.report.Rows = int(j.rowsRead.Load())
	j.report.Skipped = min(j.done, j.report.Rows)
	j.report.Requests, j.report.FromBucket = int(j.requests.Load()), int(j.fromBucket.Load())
	j.report.QueueFull = int(j.queueFull.Load())
	j.report.Elapsed = time.Since(start)
	return j.report
}

// prepare looks the function up and opens the input, the output and the results bucket.
func prepare(ctx context.Context, js jetstream.JetStream, cfg Config) (*job, error) {
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		return nil, err
	}
	fn, err := catalog.Get(ctx, cfg.Function)
	if err != nil {
		return nil, err
	}
	if fn.Status.Model == nil || fn.Status.Revision == "" {
		return nil, fmt.Errorf("function %q has no model deployed", cfg.Function)
	}
	in, err := inputOf(fn.Status.Model.Signature)
	if err != nil {
		return nil, fmt.Errorf("function %q: %w", cfg.Function, err)
	}
	results, err := events.EnsureResultsBucket(ctx, js, events.DefaultResultTTL)
	if err != nil {
		return nil, err
	}
	if cfg.RowsPerRequest == 0 {
		cfg.RowsPerRequest = autoRows(in)
	}
	batchID, err := BatchID(cfg, fn.Status.Revision)
	if err != nil {
		return nil, err
	}
	j := &job{
		cfg: cfg, js: js, results: results, input: in, batchID: batchID,
		subject: events.RequestSubject(cfg.Function, fn.Status.Revision),
		source:  "/sluice/batch/" + batchID, pending: map[string]*chunk{},
	}
	return j, j.open()
}

// open opens the input and the output; on failure nothing stays open.
func (j *job) open() error {
	file, err := os.Open(j.cfg.Input)
	if err != nil {
		return fmt.Errorf("open input: %w", err)
	}
	if j.rows, err = newRowReader(file, formatOf(j.cfg), j.input.features); err != nil {
		file.Close()
		return fmt.Errorf("input %s: %w", j.cfg.Input, err)
	}
	j.inputFile = file
	if j.out, j.done, err = openOutput(j.cfg.Output, j.cfg.SyncInterval); err != nil {
		file.Close()
		return err
	}
	return nil
}

func (j *job) close() error {
	j.inputFile.Close()
	return j.out.close()
}

// formatOf is cfg.Format, or csv or jsonl from the input's extension.
func formatOf(cfg Config) string {
	if cfg.Format != "" {
		return cfg.Format
	}
	if strings.EqualFold(filepath.Ext(cfg.Input), ".csv") {
		return "csv"
	}
	return "jsonl"
}

// BatchID names the batch of cfg: the same for the same input file (path,
// size and modification time), function, revision and rows per request, so a
// restarted batch publishes the same request ids, and a batch resumed after a
// redeploy reuses no result of the old revision.
func BatchID(cfg Config, revision string) (string, error) {
	path, err := filepath.Abs(cfg.Input)
	if err != nil {
		return "", err
	}
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("input: %w", err)
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d\x00%s\x00%s\x00%d", path, info.Size(), info.ModTime().UnixNano(), cfg.Function, revision, cfg.RowsPerRequest))
	return hex.EncodeToString(sum[:8]), nil
}

// run subscribes to the results, then publishes and writes until done.
func (j *job) run(ctx context.Context, progress func(rows int)) error {
	sub, err := j.js.Conn().Subscribe(events.ResultSubject(j.cfg.Function), j.announced)
	if err != nil {
		return fmt.Errorf("subscribe to results: %w", err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, 256<<20); err != nil {
		return err
	}
	group, groupCtx := errgroup.WithContext(ctx)
	chunks := make(chan *chunk, j.cfg.InFlight)
	acks := make(chan publishing, j.cfg.InFlight)
	slots := make(chan struct{}, j.cfg.InFlight)
	group.Go(func() error {
		defer close(acks)
		defer close(chunks)
		return j.produce(groupCtx, chunks, acks, slots)
	})
	group.Go(func() error { return j.settleAcks(groupCtx, acks) })
	group.Go(func() error { return j.write(groupCtx, chunks, slots, progress) })
	err = group.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// announced resolves the chunk a result announcement is for.
func (j *job) announced(msg *nats.Msg) {
	id, ok := strings.CutPrefix(headerValue(msg.Header, "ce-"+events.ExtensionRequestID), j.batchID+"-")
	if !ok {
		return // another client's request
	}
	if _, err := strconv.Atoi(id); err != nil {
		return
	}
	c := j.take(j.batchID + "-" + id)
	if c == nil {
		return // resolved already, or a previous run's
	}
	if headerValue(msg.Header, "ce-type") == events.TypeInferenceError {
		c.resolve(nil, 0, errors.New(errorMessage(msg.Data)))
		return
	}
	headerLength, err := events.InferenceHeaderLengthOf(msg.Header)
	if err != nil {
		c.resolve(nil, 0, fmt.Errorf("the function's answer: %w", err))
		return
	}
	c.resolve(msg.Data, int(headerLength), nil)
}

// take removes and returns the pending chunk with request id.
func (j *job) take(id string) *chunk {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := j.pending[id]
	delete(j.pending, id)
	return c
}

// headerValue reads a header whatever the case of its name.
func headerValue(header nats.Header, name string) string {
	if value := header.Get(name); value != "" {
		return value
	}
	for key, values := range header {
		if strings.EqualFold(key, name) && len(values) > 0 {
			return values[0]
		}
	}
	return ""
}
