package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/functions"
)

// globals are the flags every command shares.
type globals struct {
	natsURL      string
	natsCreds    string
	natsReplicas int
	natsTLS      natsTLS
	logLevel     string
	logFormat    string
}

// natsTLS are the client's TLS settings: the CA that signed the server's
// certificate and, when the server asks for one, the client's own.
type natsTLS struct{ ca, cert, key string }

// defaultCredentials is where `sluice up` keeps the operator's NATS
// credentials, which the CLI uses when none are given: `sluice deploy` works
// beside `make run` as it is.
var defaultCredentials = filepath.Join(".data", "nats", "admin.creds")

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Sluice: an event-driven, serverless model platform",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if value := os.Getenv("SLUICE_NATS_REPLICAS"); value != "" && !cmd.Flags().Changed("nats-replicas") {
				n, err := strconv.Atoi(value)
				if err != nil {
					return fmt.Errorf("$SLUICE_NATS_REPLICAS: %w", err)
				}
				g.natsReplicas = n
			}
			if err := events.SetReplicas(g.natsReplicas); err != nil {
				return fmt.Errorf("--nats-replicas: %w", err)
			}
			return nil
		},
	}
	flags := root.PersistentFlags()
	flags.StringVar(&g.natsURL, "nats-url", envOr("SLUICE_NATS_URL", nats.DefaultURL), "NATS server URL ($SLUICE_NATS_URL)")
	flags.IntVar(&g.natsReplicas, "nats-replicas", 1, "copies JetStream keeps of every stream and bucket Sluice makes: 3 on a cluster of three servers ($SLUICE_NATS_REPLICAS)")
	flags.StringVar(&g.natsCreds, "nats-creds", os.Getenv("SLUICE_NATS_CREDS"), "NATS credentials file of this component (default: "+defaultCredentials+" when it exists) ($SLUICE_NATS_CREDS)")
	flags.StringVar(&g.natsTLS.ca, "nats-ca", os.Getenv("SLUICE_NATS_CA"), "CA certificate that signed the NATS server's, for tls:// URLs ($SLUICE_NATS_CA)")
	flags.StringVar(&g.natsTLS.cert, "nats-cert", os.Getenv("SLUICE_NATS_CERT"), "client certificate, when the NATS server verifies clients ($SLUICE_NATS_CERT)")
	flags.StringVar(&g.natsTLS.key, "nats-key", os.Getenv("SLUICE_NATS_KEY"), "key of --nats-cert ($SLUICE_NATS_KEY)")
	flags.StringVar(&g.logLevel, "log-level", envOr("SLUICE_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	flags.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newUpCommand(g), newActivatorCommand(g), newWorkerCommand(g), newAutoscalerCommand(g), newControllerCommand(g),
		newDeployCommand(g), newFunctionsCommand(g), newStatusCommand(g), newPredictCommand(),
		newTrainCommand(g), newModelsCommand(g), newBenchCommand(), newDLQCommand(g), newBatchCommand(g), newRolloutCommand(g), newRetrainCommand(g), newKeysCommand(), newNATSCommand(g), newHealthCommand(), newVersionCommand(),
	)
	requireSubcommand(root)
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
	var log *slog.Logger
	switch g.logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(os.Stderr, options))
	case "json":
		log = slog.New(slog.NewJSONHandler(os.Stderr, options))
	default:
		return nil, fmt.Errorf("--log-format: want text or json, got %q", g.logFormat)
	}
	// Every process that logs says first what it is: a log read later names its build.
	log.Info("sluice", "version", version(), "command", strings.Join(os.Args[1:min(len(os.Args), 2)], " "), "pid", os.Getpid())
	return log, nil
}

// connect opens a NATS connection with the credentials and TLS settings of
// the flags, and its JetStream context.
func (g *globals) connect(name string, options ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	creds := g.natsCreds
	if creds == "" {
		if _, err := os.Stat(defaultCredentials); err == nil {
			creds = defaultCredentials
		}
	}
	if creds != "" {
		login, err := access.ConnectFile(creds)
		if err != nil {
			return nil, nil, err
		}
		options = append(login, options...)
	}
	if g.natsTLS.ca != "" {
		options = append(options, nats.RootCAs(g.natsTLS.ca))
	}
	if g.natsTLS.cert != "" || g.natsTLS.key != "" {
		options = append(options, nats.ClientCert(g.natsTLS.cert, g.natsTLS.key))
	}
	return connect(g.natsURL, name, options...)
}

// connect opens a NATS connection that keeps reconnecting, and its JetStream
// context. A subject the server refuses is logged with the error, so that a
// missing permission is found at once.
func connect(url, name string, options ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	options = append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			slog.Error("nats", "connection", name, "error", err)
		})}, options...)
	nc, err := nats.Connect(url, options...)
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w: give this component's credentials with --nats-creds ($SLUICE_NATS_CREDS); `sluice up` keeps the operator's in <data-dir>/nats/admin.creds", url, err)
	}
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
	nc, js, err := g.connect("sluice-cli")
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
