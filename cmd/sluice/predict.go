package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/events/oip"
)

// predictFlags are the settings of `sluice predict`.
type predictFlags struct {
	url, version, input, data, file string
	apiKey                          string
	output                          string
	timeout                         time.Duration
}

func newPredictCommand() *cobra.Command {
	var f predictFlags
	cmd := &cobra.Command{
		Use:   "predict NAME (--data JSON | -f REQUEST.json)",
		Short: "Call a function through the Open Inference Protocol v2 REST API and print the answer",
		Example: `  sluice predict iris --data '[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]'
  sluice predict iris -f request.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := &http.Client{Timeout: f.timeout, Transport: bearer{key: f.apiKey, base: http.DefaultTransport}}
			body, err := f.requestBody(client, args[0])
			if err != nil {
				return err
			}
			answer, err := post(client, f.modelURL(args[0])+"/infer", body)
			if err != nil {
				return err
			}
			switch f.output {
			case "json":
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(answer))
				return err
			case "table":
				return printAnswer(cmd.OutOrStdout(), answer)
			}
			return fmt.Errorf("--output: want table or json, got %q", f.output)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.url, "url", envOr("SLUICE_URL", "http://127.0.0.1:8080"), "activator URL ($SLUICE_URL)")
	flags.StringVar(&f.apiKey, "api-key", os.Getenv("SLUICE_API_KEY"), "API key sent as Authorization: Bearer ($SLUICE_API_KEY)")
	flags.StringVar(&f.version, "version", "", "model version to call (default: the current one)")
	flags.StringVar(&f.input, "input", "", "input name for --data (default: the model's first input)")
	flags.StringVar(&f.data, "data", "", "tensor as a JSON array, nested by dimension, e.g. [[1,2],[3,4]]")
	flags.StringVarP(&f.file, "file", "f", "", "a whole OIP v2 request body ('-' for stdin)")
	flags.DurationVar(&f.timeout, "timeout", 60*time.Second, "how long to wait for the answer")
	flags.StringVarP(&f.output, "output", "o", "table", "table (a row per input row) or json (the OIP v2 answer as is)")
	return cmd
}

func (f predictFlags) modelURL(name string) string {
	u := strings.TrimRight(f.url, "/") + "/v2/models/" + url.PathEscape(name)
	if f.version != "" {
		u += "/versions/" + url.PathEscape(f.version)
	}
	return u
}

// requestBody is the file's content, or a request built from --data with the
// input name and datatype taken from the model's metadata.
func (f predictFlags) requestBody(client *http.Client, name string) ([]byte, error) {
	switch {
	case f.file == "-":
		return io.ReadAll(os.Stdin)
	case f.file != "":
		return os.ReadFile(f.file)
	case f.data == "":
		return nil, errors.New("give the input with --data or a request with -f")
	}
	var nested any
	if err := json.Unmarshal([]byte(f.data), &nested); err != nil {
		return nil, fmt.Errorf("--data: not a JSON array: %w", err)
	}
	shape, err := nestedShape(nested)
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	var meta struct{ Inputs []oip.TensorSpec }
	resp, err := client.Get(f.modelURL(name))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := decodeAnswer(resp, &meta); err != nil {
		return nil, err
	}
	if len(meta.Inputs) == 0 {
		return nil, fmt.Errorf("model %s declares no inputs", name)
	}
	input := meta.Inputs[0]
	if f.input != "" {
		input.Name = f.input
	}
	return json.Marshal(map[string]any{"inputs": []map[string]any{{
		"name": input.Name, "datatype": input.Datatype, "shape": shape, "data": json.RawMessage(f.data),
	}}})
}

// nestedShape is the shape of a nested JSON array; every level must be even.
func nestedShape(value any) ([]int64, error) {
	list, ok := value.([]any)
	if !ok {
		return nil, nil
	}
	if len(list) == 0 {
		return []int64{0}, nil
	}
	inner, err := nestedShape(list[0])
	if err != nil {
		return nil, err
	}
	for i, item := range list[1:] {
		other, err := nestedShape(item)
		if err != nil {
			return nil, err
		}
		if fmt.Sprint(other) != fmt.Sprint(inner) {
			return nil, fmt.Errorf("element %d has shape %v, element 0 has %v", i+1, other, inner)
		}
	}
	return append([]int64{int64(len(list))}, inner...), nil
}

func post(client *http.Client, target string, body []byte) ([]byte, error) {
	resp, err := client.Post(target, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := decodeAnswer(resp, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// decodeAnswer decodes a 200 answer into out, and turns any other into an error
// carrying the server's message.
func decodeAnswer(resp *http.Response, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var failure struct{ Error string }
		if json.Unmarshal(data, &failure) == nil && failure.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, failure.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

// printAnswer writes an OIP answer as a table: a line per row of the batch,
// a column per output.
func printAnswer(out io.Writer, body []byte) error {
	answer, err := oip.DecodeInferenceResponse(body, oip.DefaultLimits())
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	columns := make([][]oip.Tensor, len(answer.Outputs))
	rows := -1
	for i, output := range answer.Outputs {
		if len(output.Shape) == 0 {
			return fmt.Errorf("output %q is a scalar: use --output json", output.Name)
		}
		ones := make([]int64, output.Shape[0])
		for r := range ones {
			ones[r] = 1
		}
		if columns[i], err = oip.SplitRows(output, ones); err != nil {
			return err
		}
		rows = max(rows, int(output.Shape[0]))
	}
	table := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := []string{"ROW"}
	for _, output := range answer.Outputs {
		header = append(header, strings.ToUpper(output.Name))
	}
	fmt.Fprintln(table, strings.Join(header, "\t"))
	for r := range rows {
		cells := []string{strconv.Itoa(r)}
		for _, column := range columns {
			cells = append(cells, formatCell(column, r))
		}
		fmt.Fprintln(table, strings.Join(cells, "\t"))
	}
	fmt.Fprintf(table, "\nmodel %s, version %s\n", answer.ModelName, answer.ModelVersion)
	return table.Flush()
}

func formatCell(column []oip.Tensor, row int) string {
	if row >= len(column) {
		return ""
	}
	var text string
	switch data := column[row].Data.(type) {
	case []float32:
		parts := make([]string, len(data))
		for i, v := range data {
			parts[i] = strconv.FormatFloat(float64(v), 'f', 4, 32)
		}
		text = strings.Join(parts, " ")
	default:
		text = strings.Trim(fmt.Sprint(data), "[]")
	}
	if column[row].Len() > 1 {
		return "[" + text + "]"
	}
	return text
}

// bearer sends an API key, when there is one, with every request.
type bearer struct {
	key  string
	base http.RoundTripper
}

// RoundTrip sends req with the key, if any; an activator that cannot be
// reached is named with the flag that points at it.
func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if b.key != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+b.key)
	}
	resp, err := b.base.RoundTrip(req)
	var dial *net.OpError
	if errors.As(err, &dial) && dial.Op == "dial" {
		return nil, fmt.Errorf("cannot reach the activator at %s://%s (--url, $SLUICE_URL): %w; is `sluice up` running?", req.URL.Scheme, req.URL.Host, err)
	}
	return resp, err
}
