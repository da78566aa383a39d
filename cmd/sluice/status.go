package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

func newStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show each function revision's replicas, queue depth and the autoscaler's last decision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var statuses []events.ScaleStatus
			revisions := map[string]functions.RevisionStatus{} // by function.revision
			err := g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
				fns, err := catalog.List(cmd.Context())
				if err != nil {
					return err
				}
				for _, fn := range fns {
					for _, revision := range fn.Status.Revisions {
						revisions[fn.Metadata.Name+"."+revision.Name] = revision
					}
				}
				kv, err := events.EnsureScaleBucket(cmd.Context(), js)
				if err != nil {
					return err
				}
				keys, err := kv.ListKeys(cmd.Context())
				if err != nil {
					return err
				}
				defer keys.Stop()
				for key := range keys.Keys() {
					entry, err := kv.Get(cmd.Context(), key)
					if errors.Is(err, jetstream.ErrKeyNotFound) {
						continue
					}
					if err != nil {
						return err
					}
					var status events.ScaleStatus
					if err := json.Unmarshal(entry.Value(), &status); err == nil {
						statuses = append(statuses, status)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			// A live revision the autoscaler has no status for (none yet, or
			// none any more: a Failed one takes no traffic) is listed too.
			decided := map[string]bool{}
			for _, s := range statuses {
				decided[s.Function+"."+s.Revision] = true
			}
			for key := range revisions {
				if !decided[key] {
					function, revision, _ := strings.Cut(key, ".")
					statuses = append(statuses, events.ScaleStatus{Function: function, Revision: revision, Reason: "-"})
				}
			}
			slices.SortFunc(statuses, func(a, b events.ScaleStatus) int {
				return strings.Compare(a.Function+"."+a.Revision, b.Function+"."+b.Revision)
			})
			table := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(table, "FUNCTION\tREVISION\tMODEL\tDESIRED\tREADY\tDEPTH\tLAST DECISION\tAGE")
			var failed []string
			for _, s := range statuses {
				revision := revisions[s.Function+"."+s.Revision]
				state := cmp.Or(string(revision.State), "not loaded yet")
				if revision.State == functions.RevisionFailed {
					failed = append(failed, fmt.Sprintf("%s revision %s cannot run: %s", s.Function, s.Revision, revision.Reason))
				}
				age := "-"
				if !s.At.IsZero() {
					age = time.Since(s.At).Round(time.Second).String()
				}
				fmt.Fprintf(table, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Function, s.Revision, state, s.Desired, s.Ready, s.Depth, s.Reason, age)
			}
			if err := table.Flush(); err != nil {
				return err
			}
			for _, line := range failed {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			return nil
		},
	}
}
