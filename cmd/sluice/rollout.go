package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/rollout"
)

func newRolloutCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Show a function's rollout, promote it, abort it or hold it at a weight"}
	cmd.AddCommand(newRolloutStatusCommand(g), newRolloutPromoteCommand(g), newRolloutAbortCommand(g), newRolloutSetWeightsCommand(g))
	return cmd
}

func newRolloutStatusCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use: "status NAME", Short: "Show the rollout of a function: revisions, phase, weights and gates", Args: cobra.ExactArgs(1),
	}
	o := addOutput(cmd, true)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		p, err := newPrinting(o, rolloutView, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		fn, err := g.getFunction(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if o.format == "text" {
			return printRollout(cmd.OutOrStdout(), fn, time.Now())
		}
		if fn.Status.Rollout == nil {
			return fmt.Errorf("function %s %w: a rollout starts when a new model version is deployed", fn.Metadata.Name, errNoRollout)
		}
		return p.one(fn)
	}
	return cmd
}

var rolloutView = view[*functions.Function]{
	kind: "Rollout", plural: "rollouts",
	columns: []metav1.TableColumnDefinition{
		{Name: "Function", Type: "string"}, {Name: "Stable", Type: "string"}, {Name: "Candidate", Type: "string"},
		{Name: "Phase", Type: "string"}, {Name: "Weight", Type: "string"}, {Name: "Step", Type: "string"},
		{Name: "Age", Type: "string"}, {Name: "Reason", Type: "string", Priority: 1},
	},
	row: func(fn *functions.Function, now time.Time) []any {
		r := fn.Status.Rollout
		return []any{fn.Metadata.Name, r.Stable, r.Candidate, string(r.Phase), fmt.Sprintf("%d%%", r.Weight), rolloutStep(fn),
			age(r.StepStartedAt, now), oneLine(r.Reason)}
	},
	object: func(fn *functions.Function) any {
		object := rolloutObject{Function: fn.Metadata.Name, RolloutStatus: *fn.Status.Rollout, Traffic: fn.Status.Traffic}
		if spec := fn.Spec.Rollout; spec != nil {
			object.Steps = spec.Steps
		}
		return object
	},
}

// rolloutObject is a function's rollout as json and yaml show it: its
// status, the weights of its steps, and the traffic split it asks for.
type rolloutObject struct {
	Function string `json:"function"`
	functions.RolloutStatus
	Steps   []int             `json:"steps,omitempty"`
	Traffic functions.Traffic `json:"traffic,omitempty"`
}

// rolloutStep is the step a rollout is at, with how many it has.
func rolloutStep(fn *functions.Function) string {
	r := fn.Status.Rollout
	if spec := fn.Spec.Rollout; spec != nil && len(spec.Steps) > 0 {
		return fmt.Sprintf("%d of %d", r.Step+1, len(spec.Steps))
	}
	return fmt.Sprintf("%d", r.Step+1)
}

// printRollout writes the rollout of fn as it stands at now, or says it has none.
func printRollout(out io.Writer, fn *functions.Function, now time.Time) error {
	r := fn.Status.Rollout
	if r == nil {
		_, err := fmt.Fprintf(out, "function %s has no rollout\n", fn.Metadata.Name)
		return err
	}
	step := rolloutStep(fn)
	fmt.Fprintf(out, "function:  %s\nstable:    %s\ncandidate: %s\nphase:     %s\nweight:    %d%%\nstep:      %s, for %s\nreason:    %s\n",
		fn.Metadata.Name, r.Stable, r.Candidate, r.Phase, r.Weight, step, now.Sub(r.StepStartedAt).Round(time.Second), r.Reason)
	fmt.Fprintln(out, "traffic:")
	table := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "  REVISION\tWEIGHT")
	for _, target := range fn.Status.Traffic {
		fmt.Fprintf(table, "  %s\t%d%%\n", target.Revision, target.Weight)
	}
	if err := table.Flush(); err != nil {
		return err
	}
	if len(r.Gates) == 0 {
		_, err := fmt.Fprintln(out, "gates:     none judged yet")
		return err
	}
	fmt.Fprintln(out, "gates:")
	for _, gate := range r.Gates {
		if _, err := fmt.Fprintf(out, "  %s\n", gate); err != nil {
			return err
		}
	}
	return nil
}

func newRolloutPromoteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "promote NAME", Short: "Give the candidate all traffic now and end the rollout", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			decision, err := g.changeRollout(cmd.Context(), args[0], func(status functions.RolloutStatus, now time.Time) (rollout.Decision, error) {
				return rollout.Promote(status, "promoted by hand", now), nil
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "function %s: revision %s promoted, it takes all traffic\n", args[0], decision.Status.Candidate)
			return err
		},
	}
}

func newRolloutAbortCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "abort NAME", Short: "Roll the candidate back now: the stable revision takes all traffic", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			decision, err := g.changeRollout(cmd.Context(), args[0], func(status functions.RolloutStatus, now time.Time) (rollout.Decision, error) {
				return rollout.Abort(status, "aborted by hand", now), nil
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "function %s: revision %s rolled back, revision %s takes all traffic\n",
				args[0], decision.Status.Candidate, decision.Status.Stable)
			return err
		},
	}
}

func newRolloutSetWeightsCommand(g *globals) *cobra.Command {
	var candidate int
	cmd := &cobra.Command{
		Use:   "set-weights NAME --candidate N",
		Short: "Hold the candidate at N percent and the stable revision at the rest, until promoted, aborted or set again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if candidate < 0 || candidate > 100 {
				return fmt.Errorf("--candidate: want a percent from 0 to 100, got %d", candidate)
			}
			decision, err := g.changeRollout(cmd.Context(), args[0], func(status functions.RolloutStatus, now time.Time) (rollout.Decision, error) {
				return rollout.SetWeight(status, candidate, now)
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "function %s: revision %s at %d%%, revision %s at %d%%; paused until promoted, aborted or set again\n",
				args[0], decision.Status.Candidate, decision.Status.Weight, decision.Status.Stable, 100-decision.Status.Weight)
			return err
		},
	}
	cmd.Flags().IntVar(&candidate, "candidate", 0, "the candidate's weight in percent, 0 to 100; the stable revision gets the rest")
	_ = cmd.MarkFlagRequired("candidate")
	return cmd
}

// errNoRollout says a function has no rollout to change.
var errNoRollout = errors.New("has no rollout")

// changeRollout decides the next status of the named function's rollout
// with decide, writes it and the traffic table it asks for through a
// compare-and-set, and announces it as the rollout loop does. A rollout
// that is over is not changed.
func (g *globals) changeRollout(ctx context.Context, name string,
	decide func(functions.RolloutStatus, time.Time) (rollout.Decision, error)) (rollout.Decision, error) {
	var decision rollout.Decision
	err := g.withCatalog(ctx, func(js jetstream.JetStream, catalog *functions.Catalog) error {
		if _, err := events.EnsureLifecycleStream(ctx, js); err != nil {
			return err
		}
		_, err := catalog.Modify(ctx, name, func(fn *functions.Function) (bool, error) {
			running := fn.Status.Rollout
			if running == nil {
				return false, fmt.Errorf("function %s %w", name, errNoRollout)
			}
			if running.Done() {
				return false, fmt.Errorf("function %s: the rollout of revision %s is over (%s); deploy a new model to start another",
					name, running.Candidate, running.Phase)
			}
			var err error
			if decision, err = decide(*running, time.Now().UTC()); err != nil {
				return false, fmt.Errorf("function %s: %w", name, err)
			}
			fn.Status.Rollout, fn.Status.Traffic = &decision.Status, decision.Status.Traffic()
			return true, nil
		})
		if err != nil {
			return err
		}
		// A new id, not the loop's function-candidate-event-step: two
		// changes by hand at one step are two events, not one stored twice.
		return rollout.Announce(ctx, js, name, decision, "/sluice/cli", "")
	})
	return decision, err
}
