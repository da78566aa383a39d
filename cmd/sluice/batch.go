package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/batch"
)

func newBatchCommand(g *globals) *cobra.Command {
	cfg := batch.DefaultConfig()
	var quiet bool
	cmd := &cobra.Command{
		Use:   "batch --function NAME --input ROWS.{csv,jsonl} --output RESULTS.jsonl",
		Short: "Score a file of rows through a function's queue, resumably, one result line per row in input order",
		Example: `  sluice batch --function iris --input rows.csv --output results.jsonl
  # interrupted? run the same command again: rows already written are skipped`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
				// What can be found wrong before the first row is said before any progress.
				if err := cfg.Validate(); err != nil {
					return err
				}
				if _, err := os.Stat(cfg.Input); err != nil {
					return fmt.Errorf("--input: %w", err)
				}
				if _, err := catalog.Get(cmd.Context(), cfg.Function); errors.Is(err, functions.ErrNotFound) {
					return fmt.Errorf("--function: %q is not deployed (sluice functions list shows what is)", cfg.Function)
				}
				return runBatch(cmd.Context(), js, cfg, quiet, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&cfg.Function, "function", "", "function that scores the rows")
	flags.StringVar(&cfg.Input, "input", "", "CSV with a header row (a column named id is the row id), or JSONL: [numbers] or {\"id\":…,\"features\":[…]} per line")
	flags.StringVar(&cfg.Format, "format", "", "csv or jsonl (default: from the input's extension)")
	flags.StringVar(&cfg.Output, "output", "", "JSONL results, one line per input row; an existing file is resumed")
	flags.IntVar(&cfg.RowsPerRequest, "rows-per-request", cfg.RowsPerRequest, "rows per request (0: as many as fit 256 KiB of tensor data, at most 4096)")
	flags.IntVar(&cfg.InFlight, "in-flight", cfg.InFlight, "most requests published and not yet written")
	flags.DurationVar(&cfg.PollInterval, "poll-interval", cfg.PollInterval, "how long to wait for a result's announcement before reading the results bucket")
	flags.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	for _, name := range []string{"function", "input", "output"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// runBatch runs the batch under a progress bar and prints its report.
func runBatch(ctx context.Context, js jetstream.JetStream, cfg batch.Config, quiet bool, stdout, stderr io.Writer) error {
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetVisibility(false))
	if !quiet {
		bar = newBar(stderr, cfg)
	}
	cfg.Errors = barWriter{bar: bar, out: stderr}
	report, err := batch.Run(ctx, js, cfg, func(rows int) { _ = bar.Add(rows) })
	if err == nil {
		_ = bar.Finish()
	} else {
		_ = bar.Exit() // as far as it got: never more than was done
	}
	fmt.Fprintln(stderr)
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "interrupted after %d rows; run the same command again to resume\n", report.Skipped+report.Written)
		return err
	}
	if err != nil {
		return err
	}
	rate := float64(report.Written) / max(report.Elapsed.Seconds(), 1e-9)
	_, err = fmt.Fprintf(stdout, "batch %s: %d rows (%d already done), %d scored, %d failed; %d requests of %d rows, %d from the results bucket, %d refused while the queue was full; %.1fs, %.0f rows/s\n",
		report.BatchID, report.Rows, report.Skipped, report.Scored, report.Failed, report.Requests, report.RowsPerRequest, report.FromBucket, report.QueueFull,
		report.Elapsed.Seconds(), rate)
	if err == nil && report.Failed > 0 {
		return exitError{code: exitFailedRows, err: fmt.Errorf("failed rows: %d; their error lines are in %s", report.Failed, cfg.Output)}
	}
	return err
}

// newBar is a rows/s progress bar with an ETA over the rows not yet in the output.
func newBar(stderr io.Writer, cfg batch.Config) *progressbar.ProgressBar {
	total := countLines(cfg.Input)
	if strings.EqualFold(filepath.Ext(cfg.Input), ".csv") || cfg.Format == "csv" {
		total-- // the header
	}
	total -= countLines(cfg.Output)
	bar := progressbar.NewOptions64(max(total, -1),
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription("scoring"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionFullWidth(),
	)
	_ = bar.RenderBlank() // starts the clock: the first rate is not that of one chunk in no time
	return bar
}

// countLines counts the newlines of a file; 0 if it cannot be read.
func countLines(path string) int64 {
	file, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer file.Close()
	var lines int64
	reader := bufio.NewReaderSize(file, 1<<20)
	buffer := make([]byte, 1<<20)
	for {
		n, err := reader.Read(buffer)
		lines += int64(bytes.Count(buffer[:n], []byte{'\n'}))
		if err != nil {
			return lines
		}
	}
}

// barWriter clears the progress bar before a bad-row report.
type barWriter struct {
	bar *progressbar.ProgressBar
	out io.Writer
}

func (w barWriter) Write(p []byte) (int, error) {
	_ = w.bar.Clear()
	return w.out.Write(p)
}
