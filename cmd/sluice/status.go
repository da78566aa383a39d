package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// revisionStatus is what `sluice status` shows of one live revision: whether
// its model runs, and the autoscaler's last decision for it.
type revisionStatus struct {
	Function string `json:"function"`
	Revision string `json:"revision"`
	// State is the model's: Ready, Failed, or "not loaded yet"; Reason says
	// why a Failed one cannot run.
	State        string    `json:"state"`
	Reason       string    `json:"reason,omitempty"`
	Desired      int       `json:"desired"`
	Ready        int       `json:"ready"`
	Depth        int64     `json:"depth"`
	LastDecision string    `json:"lastDecision"`
	DecidedAt    time.Time `json:"decidedAt,omitzero"`
}

var statusView = view[revisionStatus]{
	kind: "RevisionStatus", plural: "functions",
	columns: []metav1.TableColumnDefinition{
		{Name: "Function", Type: "string"}, {Name: "Revision", Type: "string"}, {Name: "Model", Type: "string"},
		{Name: "Desired", Type: "integer"}, {Name: "Ready", Type: "integer"}, {Name: "Depth", Type: "integer"},
		{Name: "Last Decision", Type: "string"}, {Name: "Age", Type: "string"},
		{Name: "Reason", Type: "string", Priority: 1},
	},
	row: func(s revisionStatus, now time.Time) []any {
		decided := "-"
		if !s.DecidedAt.IsZero() {
			decided = age(s.DecidedAt, now)
		}
		return []any{s.Function, s.Revision, s.State, s.Desired, s.Ready, s.Depth, s.LastDecision, decided, cmp.Or(oneLine(s.Reason), "-")}
	},
}

func newStatusCommand(g *globals) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status [-w]",
		Short: "Show each function revision's replicas, queue depth and the autoscaler's last decision",
		Args:  cobra.NoArgs,
	}
	o := addOutput(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p, err := newPrinting(o, statusView, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		return g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
			kv, err := events.EnsureScaleBucket(cmd.Context(), js)
			if err != nil {
				return err
			}
			statuses, err := readStatus(cmd.Context(), kv, catalog)
			if err != nil {
				return err
			}
			if watch {
				return watchStatus(cmd.Context(), p, kv, catalog, statuses)
			}
			if err := p.list(statuses, cmd.ErrOrStderr()); err != nil {
				return err
			}
			if p.tabular {
				reportFailed(cmd.OutOrStdout(), statuses)
			}
			return nil
		})
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after the list, print each revision again whenever the autoscaler's view of it changes, until interrupted")
	return cmd
}

// readStatus is the status of every live revision, by function and
// revision: those the autoscaler has decided for, and those it has not (not
// yet, or not any more: a Failed one takes no traffic).
func readStatus(ctx context.Context, kv jetstream.KeyValue, catalog *functions.Catalog) ([]revisionStatus, error) {
	fns, err := catalog.List(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer keys.Stop()
	decided := map[string]events.ScaleStatus{} // by function.revision
	for key := range keys.Keys() {
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var status events.ScaleStatus
		if err := json.Unmarshal(entry.Value(), &status); err == nil {
			decided[status.Function+"."+status.Revision] = status
		}
	}
	var statuses []revisionStatus
	for _, fn := range fns {
		for _, revision := range fn.Status.Revisions {
			scale, ok := decided[fn.Metadata.Name+"."+revision.Name]
			if !ok {
				scale = events.ScaleStatus{Function: fn.Metadata.Name, Revision: revision.Name, Reason: "-"}
			}
			delete(decided, fn.Metadata.Name+"."+revision.Name)
			statuses = append(statuses, statusOf(scale, revision))
		}
	}
	// A revision retired from the catalog whose workers still drain.
	for _, scale := range decided {
		statuses = append(statuses, statusOf(scale, functions.RevisionStatus{}))
	}
	slices.SortFunc(statuses, func(a, b revisionStatus) int {
		return cmp.Or(strings.Compare(a.Function, b.Function), strings.Compare(a.Revision, b.Revision))
	})
	return statuses, nil
}

func statusOf(scale events.ScaleStatus, revision functions.RevisionStatus) revisionStatus {
	return revisionStatus{
		Function: scale.Function, Revision: scale.Revision,
		State: cmp.Or(string(revision.State), "not loaded yet"), Reason: revision.Reason,
		Desired: scale.Desired, Ready: scale.Ready, Depth: scale.Depth, LastDecision: scale.Reason, DecidedAt: scale.At,
	}
}

// reportFailed says under a table why each Failed revision cannot run.
func reportFailed(out io.Writer, statuses []revisionStatus) {
	for _, s := range statuses {
		if s.State == string(functions.RevisionFailed) {
			fmt.Fprintf(out, "%s revision %s cannot run: %s\n", s.Function, s.Revision, s.Reason)
		}
	}
}

// watchStatus prints statuses, then each revision again whenever the
// autoscaler writes its status, until ctx ends.
func watchStatus(ctx context.Context, p *printing[revisionStatus], kv jetstream.KeyValue, catalog *functions.Catalog, statuses []revisionStatus) error {
	watcher, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer watcher.Stop()
	flush := p.watching()
	for _, s := range statuses {
		if err := p.one(s); err != nil {
			return err
		}
	}
	flush()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case entry, ok := <-watcher.Updates():
			if !ok {
				return errors.New("the watch of the autoscaler's status ended: is NATS still up?")
			}
			var scale events.ScaleStatus
			if entry == nil || entry.Operation() != jetstream.KeyValuePut || json.Unmarshal(entry.Value(), &scale) != nil {
				continue
			}
			var revision functions.RevisionStatus
			if fn, err := catalog.Get(ctx, scale.Function); err == nil {
				revision, _ = fn.Status.FindRevision(scale.Revision)
			}
			if err := p.one(statusOf(scale, revision)); err != nil {
				return err
			}
			flush()
		}
	}
}
