package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/events/embedded"
)

func newNATSCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "nats", Short: "NATS for a cluster: its identities (init) and the server itself (serve)"}
	cmd.AddCommand(newNATSInitCommand(), newNATSServeCommand(g))
	return cmd
}

// natsIdentities are the users `sluice nats init` makes, one per component
// that runs from the manifests, and the operator's.
var natsIdentities = []struct {
	name        string
	permissions func() access.Permissions
}{
	{"admin", access.Control}, {"controller", access.Control},
	{"activator", access.Activator}, {"autoscaler", access.Autoscaler},
}

func newNATSInitCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "init --out DIR",
		Short: "Make the keys NATS trusts and each component's credentials",
		Long: `init makes a NATS operator, its system account and the account Sluice uses, and a user for each
component, allowed only the subjects that component needs. It writes, readable by you only:
  auth.conf                 what nats-server must trust (include it in its configuration)
  authority.json            the keys; the controller signs each worker's and trainer's user with them
  admin.creds               the operator's credentials, for the CLI (--nats-creds)
  controller.creds, activator.creds, autoscaler.creds
On Kubernetes they become the Secrets the manifests of deploy/ mount (see the README). Run it once
per installation: JetStream keeps the account's streams under its key. A DIR that has an
authority.json keeps it, and only the credentials are made anew (to rotate them).`,
		Example: `  sluice nats init --out nats-auth
  kubectl -n sluice create secret generic sluice-nats-auth --from-file=nats-auth/auth.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			authority, err := access.LoadOrCreate(out)
			if err != nil {
				return err
			}
			trust, err := authority.Trust(-1)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, "auth.conf"), []byte(trust.ServerConfig()), 0o600); err != nil {
				return err
			}
			for _, identity := range natsIdentities {
				if err := authority.WriteCredentials(filepath.Join(out, identity.name+".creds"), identity.name, identity.permissions()); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote auth.conf, authority.json and the credentials of admin, controller, activator and autoscaler to %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write to (made if missing)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newNATSServeCommand(g *globals) *cobra.Command {
	var config, metricsAddr string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run nats-server with a configuration file (the image's NATS, for deploy/'s StatefulSet)",
		Long: `serve runs the nats-server Sluice embeds, configured by FILE as nats-server's own -c would be:
JetStream, a cluster's routes, TLS, and the auth.conf of ` + "`sluice nats init`" + `. SIGTERM shuts it
down; SIGUSR2 puts it in lame duck mode first, as nats-server does. With --metrics-addr it serves
/metrics (sluice_nats_*: clients, routes, traffic, JetStream's storage) and /livez, /readyz there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := server.ProcessConfigFile(config)
			if err != nil {
				return fmt.Errorf("nats: %w", err)
			}
			srv, err := server.NewServer(opts)
			if err != nil {
				return fmt.Errorf("nats: %w", err)
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			srv.ConfigureLogger()
			if err := server.Run(srv); err != nil {
				return fmt.Errorf("nats: %w", err)
			}
			storage := embedded.WatchStorage(srv, srv.Logger(), log)
			if metricsAddr != "" {
				listener, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					return fmt.Errorf("metrics: %w", err)
				}
				reg := newRegistry()
				reg.MustRegister(embedded.Metrics(srv))
				ctx, stop := context.WithCancel(cmd.Context())
				defer stop()
				go func() { _ = serveProbes(ctx, listener, reg, storage.Health, log) }()
			}
			srv.WaitForShutdown()
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "nats-server configuration file")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "address of /metrics, /livez and /readyz (off when empty)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
