package main

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

func newRetrainCommand(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "retrain NAME [--reason TEXT]",
		Short: "Ask for a training of a function now; its new model rolls out as spec.rollout says",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, id := args[0], nuid.Next()
			err := g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
				fn, err := catalog.Get(cmd.Context(), name)
				if err != nil {
					return err
				}
				if fn.Spec.Retrain == nil {
					return fmt.Errorf("function %s has no spec.retrain: add a retrain section (its data at least) and deploy it again", name)
				}
				if _, err := events.EnsureLifecycleStream(cmd.Context(), js); err != nil {
					return err
				}
				return events.PublishLifecycle(cmd.Context(), js, events.Lifecycle{
					Subject: events.RetrainSubject(name), Type: events.TypeRetrainRequested, Source: "/sluice/cli",
					ID: id, About: name, Data: map[string]string{"reason": reason},
				})
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "retrain request %s sent for function %s: training requested; follow it with `sluice rollout status %s`\n", id, name, name)
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "requested by hand", "why, for the people who read the function's history")
	return cmd
}
