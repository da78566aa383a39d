// Package batch scores a file of rows through a function's queue without
// the activator: rows are packed many to a request, published to the
// function's JetStream stream with bounded in-flight requests, and the
// results are written one JSON line per input row, in input order. A batch
// is resumable: its request ids are stable for the same input, function and
// chunk size, the output file tells which rows are done, and the results
// bucket keeps what was scored while the client was away.
package batch

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Config is one batch job.
type Config struct {
	// Function is the deployed function that scores the rows.
	Function string
	// Input is a CSV file with a header row, or JSONL (one JSON array of
	// numbers, or {"id": …, "features": […]}, per line).
	Input string
	// Format is "csv" or "jsonl"; empty means from Input's extension.
	Format string
	// Output is the JSONL file of results; an existing one is resumed.
	Output string
	// RowsPerRequest is how many rows travel in one request; 0 picks as
	// many as keep the request's tensor data within 256 KiB, at most 4,096.
	RowsPerRequest int
	// InFlight bounds the requests published and not yet written out.
	InFlight int
	// PollInterval is how long a chunk waits for its announcement before
	// the client looks its result up in the results bucket.
	PollInterval time.Duration
	// SyncInterval is the most time between two fsyncs of the output; the
	// output is only synced at chunk boundaries.
	SyncInterval time.Duration
	// MaxBackoff caps the wait between retries of a refused publish.
	MaxBackoff time.Duration
	// Errors receives one line per bad input row; nil discards them.
	Errors io.Writer
}

// DefaultConfig picks the rows per request and keeps 32 requests in flight.
func DefaultConfig() Config {
	return Config{
		RowsPerRequest: 0,
		InFlight:       32,
		PollInterval:   2 * time.Second,
		SyncInterval:   time.Second,
		MaxBackoff:     2 * time.Second,
	}
}

// Validate reports the first field that is missing or out of range.
func (c Config) Validate() error {
	switch {
	case c.Function == "":
		return errors.New("batch: Function is required")
	case c.Input == "":
		return errors.New("batch: Input is required")
	case c.Output == "":
		return errors.New("batch: Output is required")
	case c.Format != "" && c.Format != "csv" && c.Format != "jsonl":
		return fmt.Errorf("batch: Format: want csv or jsonl, got %q", c.Format)
	case c.RowsPerRequest < 0 || c.RowsPerRequest > 1<<16:
		return fmt.Errorf("batch: RowsPerRequest must be within 0..65536 (0: automatic), got %d", c.RowsPerRequest)
	case c.InFlight < 1 || c.InFlight > 4096:
		return fmt.Errorf("batch: InFlight must be within 1..4096, got %d", c.InFlight)
	case c.PollInterval <= 0 || c.SyncInterval <= 0 || c.MaxBackoff <= 0:
		return errors.New("batch: PollInterval, SyncInterval and MaxBackoff must be positive")
	}
	return nil
}

// Report is what a batch run did.
type Report struct {
	// BatchID names the batch; request ids are BatchID-<chunk index>.
	BatchID string
	// RowsPerRequest is the chunk size used (Config's, or the one picked).
	RowsPerRequest int
	// Rows is how many input rows were read, Skipped how many of them were
	// already in the output, Written how many lines this run wrote.
	Rows, Skipped, Written int
	// Scored rows got outputs; Failed rows got an error line (bad input,
	// or a request the function refused).
	Scored, Failed int
	// Requests were published; FromBucket chunks were found in the results
	// bucket instead; QueueFull counts publishes the full queue refused.
	Requests, FromBucket, QueueFull int
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
}

// autoRows is the rows per request RowsPerRequest 0 picks for in: as many as
// keep a request's tensor data within 256 KiB, from 64 to 4,096. Bigger
// requests cost the worker and NATS less per row, up to the point where
// NATS's message size limit and the worker's memory come into play.
func autoRows(in input) int {
	rowBytes := max(in.features, 1) * in.datatype.Size()
	return min(max((256<<10)/rowBytes, 64), 4096)
}
