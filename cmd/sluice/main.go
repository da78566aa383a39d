// Command sluice is the one binary of Sluice: the embedded platform (`up`),
// each of its parts on its own (`activator`, `worker`), and the client
// commands (`deploy`, `functions`, `predict`, `train`, `bench`).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"sluice.dev/sluice/activator"
)

// started is when the process began, for the worker's cold-start breakdown.
var started = time.Now()

func main() {
	activator.Version = version()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if !interrupted || !errors.Is(err, context.Canceled) { // a watch ended by Ctrl-C has nothing to say
			fmt.Fprintln(os.Stderr, "sluice:", err)
		}
		var exit exitError
		switch {
		case interrupted:
			os.Exit(130) // the shell's code for a command ended by a signal
		case errors.As(err, &exit):
			os.Exit(exit.code)
		}
		os.Exit(1)
	}
}

// exitFailedRows is the exit code of a batch that finished with failed rows.
const exitFailedRows = 2

// exitError is an error that ends the process with its own exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
