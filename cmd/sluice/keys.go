package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/activator"
)

func newKeysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Make API keys for the activator (--api-keys)"}
	var scopes []string
	create := &cobra.Command{
		Use:   "create NAME --scope VERB:FUNCTION...",
		Short: "Make an API key: print its secret once, and its entry for the keys file",
		Long: `create makes a new API key. The secret is printed once, for the caller to keep; the keys file
holds only its sha256. Add the entry to the file the activator reads (--api-keys; on Kubernetes,
the Secret sluice-api-keys): the activator picks it up within seconds, and forgets a key deleted
from the file as quickly. A scope is predict, feedback or admin, a colon, and a function or *.`,
		Example: `  sluice keys create shop --scope predict:iris --scope feedback:iris
  sluice keys create ops --scope admin:*`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, key, err := activator.NewAPIKey(args[0], scopes)
			if err != nil {
				return err
			}
			entry, err := yaml.Marshal([]activator.APIKey{key})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "secret (shown once; callers send Authorization: Bearer <secret>):\n  %s\n\n", secret)
			fmt.Fprintf(out, "entry for the keys file, under keys:\n%s\n", strings.TrimSpace(string(entry)))
			return nil
		},
	}
	create.Flags().StringArrayVar(&scopes, "scope", nil, "what the key may do: predict, feedback or admin, a colon, and a function or * (repeatable)")
	cmd.AddCommand(create)
	return cmd
}
