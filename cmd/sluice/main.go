// Command sluice is the one binary of Sluice: the embedded platform (`up`),
// each of its parts on its own (`activator`, `worker`), and the client
// commands (`deploy`, `functions`, `predict`, `train`, `bench`).
package main

import (
	"context"
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
		fmt.Fprintln(os.Stderr, "sluice:", err)
		if interrupted {
			os.Exit(130) // the shell's code for a command ended by a signal
		}
		os.Exit(1)
	}
}
