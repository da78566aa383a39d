package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the build's module version and VCS revision, as Go records
// them in the binary: "v1.2.3", or "(devel) 072752e" for a build from a
// checkout ("+dirty" when it had changes).
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var revision, modified string
	for _, setting := range info.Settings {
		switch setting.Key {
		case "vcs.revision":
			revision = setting.Value
		case "vcs.modified":
			if setting.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if revision != "" && v == "(devel)" {
		return v + " " + revision + modified
	}
	return v
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary (also GET /v2 and gRPC ServerMetadata)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "sluice", version())
			return err
		},
	}
}

// requireSubcommand makes every command that only groups others (sluice
// functions, dlq, …) fail on an unknown subcommand, with a suggestion,
// instead of printing its help and exiting 0 as if it had worked.
func requireSubcommand(cmd *cobra.Command) {
	for _, child := range cmd.Commands() {
		requireSubcommand(child)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() || cmd.Parent() == nil {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		message := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if suggestions := cmd.SuggestionsFor(args[0]); len(suggestions) > 0 {
			message += fmt.Sprintf("; did you mean %q?", suggestions[0])
		}
		return fmt.Errorf("%s (run '%s --help' for its commands)", message, cmd.CommandPath())
	}
}
