package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/functions"
)

// globals are the flags every command shares.
type globals struct {
	natsURL   string
	logLevel  string
	logFormat string
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Sluice: an event-driven, serverless model platform",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	flags := root.PersistentFlags()
	flags.StringVar(&g.natsURL, "nats-url", envOr("SLUICE_NATS_URL", nats.DefaultURL), "NATS server URL ($SLUICE_NATS_URL)")
	flags.StringVar(&g.logLevel, "log-level", envOr("SLUICE_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	flags.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newUpCommand(g), newActivatorCommand(g), newWorkerCommand(g), newAutoscalerCommand(g), newControllerCommand(g),
		newDeployCommand(g), newFunctionsCommand(g), newStatusCommand(g), newPredictCommand(),
		newTrainCommand(g), newModelsCommand(g), newBenchCommand(), newDLQCommand(g), newBatchCommand(g), newRolloutCommand(g), newRetrainCommand(g), newKeysCommand(),
	)
	return root
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// logger builds the structured logger the flags ask for.
func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	options := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, options)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, options)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", g.logFormat)
}

// connect opens a NATS connection that keeps reconnecting, and its JetStream context.
func connect(url, name string, options ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	options = append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, options...)
	nc, err := nats.Connect(url, options...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w (is `sluice up` running?)", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// withCatalog connects to NATS, opens the function catalog, and calls use with it.
func (g *globals) withCatalog(ctx context.Context, use func(jetstream.JetStream, *functions.Catalog) error) error {
	nc, js, err := connect(g.natsURL, "sluice-cli")
	if err != nil {
		return err
	}
	defer nc.Close()
	catalog, err := functions.OpenCatalog(ctx, js)
	if err != nil {
		return err
	}
	return use(js, catalog)
}

// getFunction reads one function from the catalog.
func (g *globals) getFunction(ctx context.Context, name string) (fn *functions.Function, err error) {
	err = g.withCatalog(ctx, func(_ jetstream.JetStream, catalog *functions.Catalog) error {
		fn, err = catalog.Get(ctx, name)
		return err
	})
	return fn, err
}
