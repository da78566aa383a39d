package main

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/retrain"
)

func newModelsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "models", Short: "Publish model versions"}
	cmd.AddCommand(&cobra.Command{
		Use:   "push NAME MODEL.onnx",
		Short: "Publish a new version of a function's model: into the model store, with a dev.sluice.model.published event",
		Long: `Publish a new version of a function's model, as a trainer in any language ends: the ONNX file
goes to the model store and a dev.sluice.model.published event announces it. The platform makes it
a new revision, which takes traffic as the function's spec.rollout says.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			model, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			return g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
				if _, err := catalog.Get(cmd.Context(), name); err != nil {
					return err
				}
				version, err := retrain.Publish(cmd.Context(), js, catalog, name, model, nil)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "published %s (sha256 %s); follow it with `sluice rollout status %s`\n", version.Object, version.SHA256[:12], name)
				return nil
			})
		},
	})
	return cmd
}
