package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/onnxfile"
	"sluice.dev/sluice/functions/retrain"
	"sluice.dev/sluice/functions/train"
	"sluice.dev/sluice/worker/onnx"
)

func newTrainCommand(g *globals) *cobra.Command {
	var input, output, label, function, run string
	cfg := train.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "train (--input ROWS.csv --output MODEL.onnx | --function NAME)",
		Short: "Fit a small classifier: on a CSV into an ONNX file, or as a function's trainer, publishing a new version",
		Long: `With --input, fit a classifier on a CSV of labelled rows and write it as an ONNX model.

With --function (or $SLUICE_FUNCTION), be the function's trainer, as the retrain loop runs it:
read its base data and feedback, train, compare with the serving model on held-out rows, and
publish the new version to the model store with a dev.sluice.model.published event. It refuses
(exit 1) to publish a model less accurate than the serving one by more than
spec.retrain.maxRegression.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case function != "" && input != "":
				return errors.New("give --input or --function, not both")
			case function != "":
				return trainFunction(cmd, g, function, run, cfg)
			case input == "":
				return errors.New("give --input (a CSV to fit) or --function (a function to retrain)")
			}
			classifier, _, report, err := train.FitFile(cmd.Context(), input, label, cfg)
			if err != nil {
				return err
			}
			model, err := classifier.ONNX()
			if err != nil {
				return err
			}
			if err := os.WriteFile(output, model, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trained on %d rows (%d features, %d classes) in %s: train accuracy %.3f, held-out accuracy %.3f on %d rows\nwrote %s (%d bytes)\n",
				report.TrainRows, report.Features, report.Classes, report.Duration.Round(time.Millisecond),
				report.TrainAccuracy, report.TestAccuracy, report.TestRows, output, len(model))
			return nil
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&input, "input", "", "CSV with a header row; every column but the label is a numeric feature")
	flags.StringVar(&output, "output", "model.onnx", "ONNX file to write")
	flags.StringVar(&label, "label", "", "label column (default: the last column)")
	flags.StringVar(&function, "function", os.Getenv(retrain.EnvFunction), "train this function and publish a new version ($"+retrain.EnvFunction+")")
	flags.StringVar(&run, "run", os.Getenv(retrain.EnvRun), "name of the training run, recorded with the version ($"+retrain.EnvRun+")")
	flags.IntVar(&cfg.HiddenUnits, "hidden", cfg.HiddenUnits, "hidden ReLU units; 0 for multinomial logistic regression")
	flags.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "full-batch training steps")
	flags.Float64Var(&cfg.TestFraction, "test-fraction", cfg.TestFraction, "share of each class held out to measure accuracy")
	flags.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the split and the initial weights")
	return cmd
}

// trainFunction is the default trainer of the trainer contract.
func trainFunction(cmd *cobra.Command, g *globals, function, run string, cfg train.Config) error {
	var scorer retrain.Scorer
	if err := onnx.Init(""); err == nil {
		scorer = sessionScorer{}
	} else {
		fmt.Fprintf(cmd.ErrOrStderr(), "the serving model is not measured (%v)\n", err)
	}
	return g.withCatalog(cmd.Context(), func(js jetstream.JetStream, catalog *functions.Catalog) error {
		trained, err := retrain.Train(cmd.Context(), js, catalog, scorer, function, run, cfg)
		if err != nil {
			return err
		}
		t := trained.Training
		serving := "not measured"
		if t.ServingAccuracy >= 0 {
			serving = fmt.Sprintf("%.3f (revision %s)", t.ServingAccuracy, t.Parent)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "trained %s on %d rows (%d of them feedback, %d skipped): held-out accuracy %.3f on %d rows, serving model %s\npublished %s\n",
			function, t.Rows, t.FeedbackRows, trained.Data.Skipped, t.TestAccuracy, t.HeldOutRows, serving, trained.Version.Object)
		return nil
	})
}

// sessionScorer labels rows with a model in an ONNX Runtime session: the
// class names of its "class" output, as sluice train's models have one.
type sessionScorer struct{}

var _ retrain.Scorer = sessionScorer{}

func (sessionScorer) Label(model []byte, rows [][]float32) ([]string, error) {
	signature, err := onnxfile.ReadSignature(model)
	if err != nil {
		return nil, err
	}
	session, err := onnx.Load(model, signature, onnx.DefaultSessionConfig())
	if err != nil {
		return nil, err
	}
	defer session.Close()
	if len(signature.Inputs) != 1 || len(rows) == 0 {
		return nil, errors.New("the model does not take one matrix of features")
	}
	input, err := oip.NewTensor(signature.Inputs[0].Name, []int64{int64(len(rows)), int64(len(rows[0]))}, slices.Concat(rows...))
	if err != nil {
		return nil, err
	}
	outputs, err := session.Run([]oip.Tensor{input})
	if err != nil {
		return nil, err
	}
	class, ok := oip.FindTensor(outputs, train.ClassName)
	labels, isText := class.Data.([]string)
	if !ok || !isText {
		return nil, fmt.Errorf("the model has no %q output of class names", train.ClassName)
	}
	return labels, nil
}
