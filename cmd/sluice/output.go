package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	"sluice.dev/sluice/functions"
)

// output is the -o flag of a command that shows objects. Tables are
// kubectl's (AGE as kubectl writes it, wide adds the columns of priority 1),
// json and yaml the objects themselves (times in RFC 3339), a list as a List
// of items. A command whose default is a description for people, such as
// `dlq show`, has the format text besides.
type output struct {
	format   string
	describe bool
}

// addOutput adds -o to cmd, checked before it runs; describe says its
// default is a description.
func addOutput(cmd *cobra.Command, describe bool) *output {
	o := &output{format: "table", describe: describe}
	if describe {
		o.format = "text"
	}
	cmd.Flags().StringVarP(&o.format, "output", "o", o.format, "output format: "+o.formats())
	cmd.PreRunE = func(*cobra.Command, []string) error {
		_, err := o.printer()
		return err
	}
	return o
}

func (o *output) formats() string {
	if o.describe {
		return "text, table, wide, json or yaml"
	}
	return "table, wide, json or yaml"
}

// printer is the printer of o's format, or an error naming the flag.
func (o *output) printer() (printers.ResourcePrinter, error) {
	switch o.format {
	case "table", "wide":
		return printers.NewTablePrinter(printers.PrintOptions{Wide: o.format == "wide"}), nil
	case "json":
		return &printers.JSONPrinter{}, nil
	case "yaml":
		return &printers.YAMLPrinter{}, nil
	case "text":
		if o.describe {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("--output: want %s, got %q", o.formats(), o.format)
}

// view is how one kind of object is shown: its kind and plural in the
// objects and messages, its table's columns and a row of them, and the
// object json and yaml show, when not the value itself.
type view[T any] struct {
	kind, plural string
	columns      []metav1.TableColumnDefinition
	row          func(item T, now time.Time) []any
	object       func(item T) any
}

// printing prints items of one view in one format, again and again when
// watching: a table's header comes once.
type printing[T any] struct {
	view    view[T]
	tabular bool
	printer printers.ResourcePrinter
	out     io.Writer
	now     func() time.Time
}

func newPrinting[T any](o *output, v view[T], out io.Writer) (*printing[T], error) {
	printer, err := o.printer()
	if err != nil {
		return nil, err
	}
	return &printing[T]{view: v, tabular: o.format == "table" || o.format == "wide", printer: printer, out: out, now: time.Now}, nil
}

// list prints items as a table, or as a List; an empty table says so on
// errOut, as kubectl does, and prints nothing on out.
func (p *printing[T]) list(items []T, errOut io.Writer) error {
	if p.tabular && len(items) == 0 {
		_, err := fmt.Fprintf(errOut, "No %s found.\n", p.view.plural)
		return err
	}
	if p.tabular {
		return p.printer.PrintObj(p.table(items), p.out)
	}
	list := make([]any, len(items))
	for i, item := range items {
		object, err := p.object(item)
		if err != nil {
			return err
		}
		list[i] = object.Object
	}
	return p.printer.PrintObj(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "List", "items": list, "metadata": map[string]any{},
	}}, p.out)
}

// one prints one item: a table row, or the object.
func (p *printing[T]) one(item T) error {
	if p.tabular {
		return p.printer.PrintObj(p.table([]T{item}), p.out)
	}
	object, err := p.object(item)
	if err != nil {
		return err
	}
	return p.printer.PrintObj(object, p.out)
}

// watching makes the rows of later tables line up with the first one's,
// and returns what writes them out after each print.
func (p *printing[T]) watching() (flush func()) {
	if !p.tabular {
		return func() {}
	}
	w := printers.GetNewTabWriter(p.out)
	p.out = w
	return func() { _ = w.Flush() }
}

func (p *printing[T]) table(items []T) *metav1.Table {
	table := &metav1.Table{ColumnDefinitions: p.view.columns}
	now := p.now()
	for _, item := range items {
		table.Rows = append(table.Rows, metav1.TableRow{Cells: p.view.row(item, now)})
	}
	return table
}

// object is item as json and yaml show it, with apiVersion and kind.
func (p *printing[T]) object(item T) (*unstructured.Unstructured, error) {
	var value any = item
	if p.view.object != nil {
		value = p.view.object(item)
	}
	data, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	object := map[string]any{}
	if err := json.Unmarshal(data, &object); err != nil {
		return nil, err
	}
	if object["apiVersion"] == nil {
		object["apiVersion"] = functions.APIVersion
	}
	if object["kind"] == nil {
		object["kind"] = p.view.kind
	}
	return &unstructured.Unstructured{Object: object}, nil
}

// age is how long ago t was, as kubectl's AGE column writes it; "<unknown>" for no time.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}
