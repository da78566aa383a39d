package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/worker/onnx"
)

func newDeployCommand(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "deploy -f FUNCTION.yaml",
		Short: "Upload a function's model and register it (the same YAML kubectl applies)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
				deployer := functions.NewDeployer(js, catalog, events.DefaultQueueConfig())
				if err := onnx.Init(""); err == nil {
					deployer.WithChecker(sessionChecker{})
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "models are not loaded before they take traffic here (%v); the first worker will\n", err)
				}
				for _, file := range files {
					fn, err := deployFile(cmd.Context(), deployer, file)
					if err != nil {
						return err
					}
					if err := reportDeployed(cmd.OutOrStdout(), fn); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "Function YAML file (repeatable)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// sessionChecker loads a model once into an ONNX Runtime session, on one CPU
// thread, and closes it: the CPU provider runs every operator CUDA does, so a
// model for device gpu is checked there too.
type sessionChecker struct{}

var _ functions.ModelChecker = sessionChecker{}

// CheckModel returns ONNX Runtime's error when the model does not load.
func (sessionChecker) CheckModel(model []byte, signature oip.Signature, _ functions.RuntimeSpec) error {
	session, err := onnx.Load(model, signature, onnx.DefaultSessionConfig())
	if err != nil {
		return err
	}
	return session.Close()
}

// reportDeployed says what a deploy did, and fails when the new revision's
// model cannot run, saying which revision serves instead, if any.
func reportDeployed(out io.Writer, fn *functions.Function) error {
	current, _ := fn.Status.FindRevision(fn.Status.Revision)
	if current.State != functions.RevisionFailed {
		fmt.Fprintf(out, "function %s deployed: revision %s, model sha256 %s\n", fn.Metadata.Name, fn.Status.Revision, fn.Status.Model.SHA256[:12])
		return nil
	}
	serving, err := fn.Status.Serving("")
	if err != nil {
		return fmt.Errorf("function %s: %w; it answers 503 until a model that runs is deployed", fn.Metadata.Name, err)
	}
	return fmt.Errorf("function %s: revision %s %w: %s; revision %s keeps serving", fn.Metadata.Name, current.Name, functions.ErrModelCannotRun, current.Reason, serving.Name)
}

// deployFile deploys the Function in file; spec.model.path is relative to the file.
func deployFile(ctx context.Context, deployer *functions.Deployer, file string) (*functions.Function, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	fn, err := functions.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := fn.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var model []byte
	if path := fn.Spec.Model.Path; path != "" {
		if model, err = os.ReadFile(besideFile(file, path)); err != nil {
			return nil, fmt.Errorf("%s: spec.model.path: %w", file, err)
		}
	}
	if retrain := fn.Spec.Retrain; retrain != nil && retrain.Data.Path != "" {
		data, err := os.ReadFile(besideFile(file, retrain.Data.Path))
		if err == nil {
			err = deployer.PutData(ctx, fn, data)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: spec.retrain.data.path: %w", file, err)
		}
	}
	deployed, err := deployer.Deploy(ctx, fn, model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return deployed, nil
}

// besideFile resolves a path of a Function file relative to the file.
func besideFile(file, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(file), path)
}

var functionView = view[*functions.Function]{
	kind: functions.Kind, plural: "functions",
	columns: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string"}, {Name: "Revision", Type: "string"}, {Name: "Model", Type: "string"},
		{Name: "Device", Type: "string"}, {Name: "Min", Type: "integer"}, {Name: "Max", Type: "integer"},
		{Name: "Updated", Type: "string"},
		{Name: "SHA256", Type: "string", Priority: 1}, {Name: "Traffic", Type: "string", Priority: 1},
		{Name: "Rollout", Type: "string", Priority: 1},
	},
	row: func(fn *functions.Function, now time.Time) []any {
		current, _ := fn.Status.FindRevision(fn.Status.Revision)
		sha := "-"
		if fn.Status.Model != nil {
			sha = fn.Status.Model.SHA256[:12]
		}
		traffic := make([]string, len(fn.Status.Traffic))
		for i, target := range fn.Status.Traffic {
			traffic[i] = fmt.Sprintf("%s=%d%%", target.Revision, target.Weight)
		}
		rollout := "-"
		if r := fn.Status.Rollout; r != nil {
			rollout = string(r.Phase)
		}
		return []any{fn.Metadata.Name, fn.Status.Revision, cmp.Or(string(current.State), "not loaded yet"), fn.Spec.Runtime.Device,
			fn.Spec.Scaling.MinReplicas, fn.Spec.Scaling.MaxReplicas, age(fn.Status.UpdatedAt, now),
			sha, cmp.Or(strings.Join(traffic, ","), "-"), rollout}
	},
}

func newFunctionsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "functions", Aliases: []string{"fn", "function"}, Short: "List, show and delete functions"}
	list := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List deployed functions", Args: cobra.NoArgs}
	listOutput := addOutput(list, false)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		p, err := newPrinting(listOutput, functionView, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		var fns []*functions.Function
		err = g.withCatalog(cmd.Context(), func(_ jetstream.JetStream, catalog *functions.Catalog) (err error) {
			fns, err = catalog.List(cmd.Context())
			return err
		})
		if err != nil {
			return err
		}
		return p.list(fns, cmd.ErrOrStderr())
	}
	get := &cobra.Command{
		Use: "get NAME", Short: "Show a function: a table row, or with -o yaml|json the whole of it with its status",
		Args: cobra.ExactArgs(1),
	}
	getOutput := addOutput(get, false)
	get.RunE = func(cmd *cobra.Command, args []string) error {
		p, err := newPrinting(getOutput, functionView, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		fn, err := g.getFunction(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return p.one(fn)
	}
	cmd.AddCommand(list, get, newFunctionsDeleteCommand(g))
	return cmd
}

func newFunctionsDeleteCommand(g *globals) *cobra.Command {
	var keepModels, yes bool
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a function, its queue, and its model versions and data in the model store (asks first, unless --yes)",
		Long: `delete takes the function out of the catalog, deletes its queue (with the requests still in it), and
removes its objects from the model store (its model versions and base data) unless another function
uses them, or --keep-models. It asks first, unless --yes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := confirm(cmd, yes, "Delete function "+args[0]+", its queue and its models?"); err != nil {
				return err
			}
			err := g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
				if err := functions.NewDeployer(js, catalog, events.DefaultQueueConfig()).Delete(cmd.Context(), args[0]); err != nil {
					return err
				}
				if keepModels {
					return nil
				}
				return catalog.DeleteObjectsOf(cmd.Context(), args[0])
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "function %s deleted\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&keepModels, "keep-models", false, "keep the function's model versions and data in the model store")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "delete without asking")
	return cmd
}
