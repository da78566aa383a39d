package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

func newDLQCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List, show, replay and purge requests that were given up"}
	cmd.AddCommand(newDLQListCommand(g), newDLQShowCommand(g), newDLQReplayCommand(g), newDLQPurgeCommand(g))
	return cmd
}

// withDeadLetters connects to NATS and calls use with the JetStream context.
func (g *globals) withDeadLetters(ctx context.Context, use func(jetstream.JetStream) error) error {
	return g.withCatalog(ctx, func(js jetstream.JetStream, _ *functions.Catalog) error { return use(js) })
}

func newDLQListCommand(g *globals) *cobra.Command {
	var function string
	cmd := &cobra.Command{Use: "list [--function F]", Aliases: []string{"ls"}, Short: "List dead letters, oldest first", Args: cobra.NoArgs}
	o := addOutput(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p, err := newPrinting(o, deadLetterView, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		var letters []events.DeadLetter
		err = g.withDeadLetters(cmd.Context(), func(js jetstream.JetStream) (err error) {
			letters, err = events.ListDeadLetters(cmd.Context(), js, function)
			return err
		})
		if err != nil {
			return err
		}
		return p.list(letters, cmd.ErrOrStderr())
	}
	cmd.Flags().StringVar(&function, "function", "", "only the dead letters of this function")
	return cmd
}

var deadLetterView = view[events.DeadLetter]{
	kind: "DeadLetter", plural: "dead letters",
	columns: []metav1.TableColumnDefinition{
		{Name: "Seq", Type: "integer"}, {Name: "Function", Type: "string"}, {Name: "Revision", Type: "string"},
		{Name: "Attempts", Type: "integer"}, {Name: "Age", Type: "string"}, {Name: "Reason", Type: "string"},
		{Name: "Subject", Type: "string", Priority: 1},
	},
	row: func(letter events.DeadLetter, now time.Time) []any {
		return []any{letter.Seq, letter.Function, letter.Revision, letter.Attempts, age(letter.At, now), oneLine(letter.Reason), cmp.Or(letter.Subject, "-")}
	},
	object: func(letter events.DeadLetter) any {
		object := deadLetterObject{Seq: letter.Seq, Function: letter.Function, Revision: letter.Revision, Reason: letter.Reason,
			Attempts: letter.Attempts, At: letter.At, Subject: letter.Subject, Header: letter.Header}
		body := letter.Data
		if plain := binaryAsJSON(letter); plain != nil {
			body = plain
		}
		if utf8.Valid(body) {
			object.Data = string(body)
		} else {
			object.DataBase64 = body
		}
		return object
	},
}

// deadLetterObject is a dead letter as json and yaml show it: its body as
// text when it is (a request in binary tensors written as JSON), else in
// base64, as CloudEvents' JSON format does.
type deadLetterObject struct {
	Seq        uint64              `json:"seq"`
	Function   string              `json:"function"`
	Revision   string              `json:"revision"`
	Reason     string              `json:"reason"`
	Attempts   int                 `json:"attempts"`
	At         time.Time           `json:"at"`
	Subject    string              `json:"subject"`
	Header     map[string][]string `json:"header,omitempty"`
	Data       string              `json:"data,omitempty"`
	DataBase64 []byte              `json:"data_base64,omitempty"`
}

// oneLine keeps a reason to one table row.
func oneLine(reason string) string {
	reason = strings.Join(strings.Fields(reason), " ")
	if len(reason) > 120 {
		reason = reason[:117] + "..."
	}
	return reason
}

func newDLQShowCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use: "show SEQ", Short: "Show a dead letter: why it was given up, the request's headers and body", Args: cobra.ExactArgs(1),
	}
	o := addOutput(cmd, true)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		p, err := newPrinting(o, deadLetterView, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		seq, err := parseSeq(args[0])
		if err != nil {
			return err
		}
		var letter events.DeadLetter
		err = g.withDeadLetters(cmd.Context(), func(js jetstream.JetStream) (err error) {
			letter, err = events.GetDeadLetter(cmd.Context(), js, seq)
			return err
		})
		if err != nil {
			return err
		}
		if o.format == "text" {
			return printDeadLetter(cmd.OutOrStdout(), letter)
		}
		return p.one(letter)
	}
	return cmd
}

func printDeadLetter(out io.Writer, letter events.DeadLetter) error {
	fmt.Fprintf(out, "seq:      %d\nfunction: %s\nrevision: %s\nattempts: %d\nat:       %s\nsubject:  %s\nreason:   %s\n",
		letter.Seq, letter.Function, letter.Revision, letter.Attempts, letter.At.Format(time.RFC3339), letter.Subject, letter.Reason)
	fmt.Fprintln(out, "headers:")
	keys := make([]string, 0, len(letter.Header))
	for key := range letter.Header {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		for _, value := range letter.Header[key] {
			fmt.Fprintf(out, "  %s: %s\n", key, value)
		}
	}
	body, title := letter.Data, "body:"
	if plain := binaryAsJSON(letter); plain != nil {
		body, title = plain, "body (binary tensors, shown as JSON):"
	}
	fmt.Fprintln(out, title)
	_, err := fmt.Fprintf(out, "%s\n", body)
	return err
}

// binaryAsJSON is the request of a dead letter in the binary tensor data
// extension written as plain JSON, or nil when it is not one.
func binaryAsJSON(letter events.DeadLetter) []byte {
	length, err := events.InferenceHeaderLengthOf(letter.Header)
	if err != nil || length == 0 {
		return nil
	}
	req, err := oip.DecodeInferenceRequestBinary(letter.Data, length, oip.DefaultLimits())
	if err != nil {
		return nil
	}
	plain, err := oip.AppendInferenceRequest(nil, req)
	if err != nil {
		return nil
	}
	return plain
}

func newDLQReplayCommand(g *globals) *cobra.Command {
	var all bool
	var function string
	cmd := &cobra.Command{
		Use:   "replay (SEQ... | --all [--function F])",
		Short: "Publish dead letters again on their original subject, and delete them from the DLQ",
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return errors.New("give the sequences to replay, or --all")
			}
			if function != "" && !all {
				return errors.New("--function goes with --all")
			}
			seqs := make([]uint64, len(args))
			for i, arg := range args {
				var err error
				if seqs[i], err = parseSeq(arg); err != nil {
					return err
				}
			}
			return g.withDeadLetters(cmd.Context(), func(js jetstream.JetStream) error {
				if all {
					letters, err := events.ListDeadLetters(cmd.Context(), js, function)
					if err != nil {
						return err
					}
					for _, letter := range letters {
						seqs = append(seqs, letter.Seq)
					}
				}
				for _, seq := range seqs {
					if err := events.ReplayDeadLetter(cmd.Context(), js, seq); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "dead letter %d replayed\n", seq)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter")
	cmd.Flags().StringVar(&function, "function", "", "with --all: only the dead letters of this function")
	return cmd
}

func newDLQPurgeCommand(g *globals) *cobra.Command {
	var function string
	var yes bool
	cmd := &cobra.Command{
		Use: "purge [--function F]", Short: "Delete dead letters without replaying them (asks first, unless --yes)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if function != "" {
				if err := events.ValidateName(function); err != nil {
					return fmt.Errorf("--function: %w", err)
				}
			}
			target := "every function"
			if function != "" {
				target = "function " + function
			}
			if err := confirm(cmd, yes, "Delete the dead letters of "+target+" for good?"); err != nil {
				return err
			}
			err := g.withDeadLetters(cmd.Context(), func(js jetstream.JetStream) error {
				return events.PurgeDeadLetters(cmd.Context(), js, function)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dead letters of %s purged\n", target)
			return nil
		},
	}
	cmd.Flags().StringVar(&function, "function", "", "only the dead letters of this function")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "purge without asking")
	return cmd
}

func parseSeq(arg string) (uint64, error) {
	seq, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%q is not a dead letter's sequence: want a positive integer, as `sluice dlq list` shows", arg)
	}
	return seq, nil
}
