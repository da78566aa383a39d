package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/functions/train"
)

func newTrainCommand() *cobra.Command {
	var input, output, label string
	cfg := train.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "train --input ROWS.csv --output MODEL.onnx",
		Short: "Fit a small classifier on a CSV of labelled rows and write it as an ONNX model",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	flags.IntVar(&cfg.HiddenUnits, "hidden", cfg.HiddenUnits, "hidden ReLU units; 0 for multinomial logistic regression")
	flags.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "full-batch training steps")
	flags.Float64Var(&cfg.TestFraction, "test-fraction", cfg.TestFraction, "share of each class held out to measure accuracy")
	flags.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the split and the initial weights")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}
