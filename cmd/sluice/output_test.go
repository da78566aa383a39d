package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/functions"
)

var update = flag.Bool("update", false, "write the golden files of the printers' tests")

// golden compares got with testdata/name, or writes it there with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "go test ./cmd/sluice -run TestPrinters -update writes it")
	require.Equal(t, string(want), string(got))
}

// printAll prints items in every format of o's kind, each under a title.
func printAll[T any](t *testing.T, v view[T], items []T, now time.Time, formats ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, format := range formats {
		out.WriteString("== -o " + format + " (list)\n")
		p, err := newPrinting(&output{format: format}, v, &out)
		require.NoError(t, err)
		p.now = func() time.Time { return now }
		require.NoError(t, p.list(items, &out))
		out.WriteString("== -o " + format + " (one)\n")
		p, err = newPrinting(&output{format: format}, v, &out)
		require.NoError(t, err)
		p.now = func() time.Time { return now }
		require.NoError(t, p.one(items[0]))
	}
	return out.Bytes()
}

var formats = []string{"table", "wide", "json", "yaml"}

func TestPrinters(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	fn := &functions.Function{
		APIVersion: functions.APIVersion, Kind: functions.Kind, Metadata: functions.Metadata{Name: "iris"},
		Spec: functions.Spec{
			Model:   functions.ModelSpec{Path: "./iris.onnx"},
			Runtime: functions.RuntimeSpec{Device: "cpu"}, Scaling: functions.ScalingSpec{MinReplicas: 0, MaxReplicas: 4},
			Rollout: &functions.RolloutSpec{Steps: []int{10, 50, 100}},
		},
		Status: functions.Status{
			Revision: "2", Generation: 2, UpdatedAt: now.Add(-90 * time.Minute),
			Model:     &functions.ModelVersion{SHA256: "4b6d3c5f0e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4"},
			Traffic:   functions.Traffic{{Revision: "1", Weight: 90}, {Revision: "2", Weight: 10}},
			Revisions: []functions.RevisionStatus{{Name: "1", State: functions.RevisionReady}, {Name: "2", State: functions.RevisionReady}},
			Rollout: &functions.RolloutStatus{Stable: "1", Candidate: "2", Phase: functions.RolloutProgressing, Weight: 10,
				StepStartedAt: now.Add(-2 * time.Minute), Reason: "started at weight 10%"},
		},
	}
	plain := &functions.Function{APIVersion: functions.APIVersion, Kind: functions.Kind, Metadata: functions.Metadata{Name: "wine"},
		Spec: functions.Spec{Runtime: functions.RuntimeSpec{Device: "gpu"}, Scaling: functions.ScalingSpec{MinReplicas: 1, MaxReplicas: 2}}}
	golden(t, "functions.golden", printAll(t, functionView, []*functions.Function{fn, plain}, now, formats...))
	golden(t, "rollout.golden", printAll(t, rolloutView, []*functions.Function{fn}, now, formats...))

	statuses := []revisionStatus{
		{Function: "iris", Revision: "1", State: "Ready", Desired: 1, Ready: 1, Depth: 3, LastDecision: "queue depth 3", DecidedAt: now.Add(-3 * time.Second)},
		{Function: "iris", Revision: "2", State: "Failed", Reason: "Load model: unsupported\n  opset 99", LastDecision: "-"},
	}
	golden(t, "status.golden", printAll(t, statusView, statuses, now, formats...))

	letters := []events.DeadLetter{
		{Seq: 7, Function: "iris", Revision: "1", Reason: "inputs: want a list", Attempts: 5, At: now.Add(-26 * time.Hour),
			Subject: "sluice.requests.iris.1", Header: nats.Header{"Nats-Msg-Id": {"req-1"}}, Data: []byte(`{"inputs":"bad"}`)},
		{Seq: 8, Function: "iris", Revision: "1", Reason: "not JSON", Attempts: 1, At: now.Add(-time.Minute), Data: []byte{0xff, 0x00, 0x01}},
	}
	golden(t, "deadletters.golden", printAll(t, deadLetterView, letters, now, formats...))
}

func TestPrintersSayWhenThereIsNothing(t *testing.T) {
	var out, errOut bytes.Buffer
	p, err := newPrinting(&output{format: "table"}, functionView, &out)
	require.NoError(t, err)
	require.NoError(t, p.list(nil, &errOut))
	require.Empty(t, out.String())
	require.Equal(t, "No functions found.\n", errOut.String())

	p, err = newPrinting(&output{format: "json"}, functionView, &out)
	require.NoError(t, err)
	require.NoError(t, p.list(nil, &errOut))
	require.JSONEq(t, `{"apiVersion":"v1","kind":"List","items":[],"metadata":{}}`, out.String())

	_, err = newPrinting(&output{format: "xml"}, functionView, &out)
	require.EqualError(t, err, `--output: want table, wide, json or yaml, got "xml"`)
	_, err = newPrinting(&output{format: "text"}, functionView, &out)
	require.Error(t, err, "text is only for commands that describe")
}

// status -w prints the table, then a row each time the autoscaler writes a
// revision's status, under the same header, until interrupted; -o json
// prints each as an object.
func TestStatusWatch(t *testing.T) {
	srv, _, js := natstest.JetStream(t)
	ctx := context.Background()
	kv, err := events.EnsureScaleBucket(ctx, js)
	require.NoError(t, err)
	put := func(status events.ScaleStatus) {
		data, err := json.Marshal(status)
		require.NoError(t, err)
		_, err = kv.Put(ctx, events.ScaleKey(status.Function, status.Revision), data)
		require.NoError(t, err)
	}
	for _, format := range []string{"table", "json"} {
		put(events.ScaleStatus{Function: "iris", Revision: "1", Reason: "idle", At: time.Now()})
		watchCtx, cancel := context.WithCancel(ctx)
		root := newRootCommand()
		out := &lockedBuffer{}
		root.SetOut(out)
		root.SetErr(out)
		root.SetArgs([]string{"--nats-url", srv.ClientURL(), "status", "--watch", "-o", format})
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(watchCtx) }()
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "idle") }, 5*time.Second, 10*time.Millisecond, "%s", out)
		put(events.ScaleStatus{Function: "iris", Revision: "1", Desired: 1, Depth: 4, Reason: "queue depth 4", At: time.Now()})
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "queue depth 4") }, 5*time.Second, 10*time.Millisecond, out.String())
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		if format == "table" {
			require.Equal(t, 1, strings.Count(out.String(), "FUNCTION"), "one header: %s", out.String())
			require.Regexp(t, `(?m)^iris\s+1\s+not loaded yet\s+1\s+0\s+4\s+queue depth 4\s+\S+$`, out.String())
		} else {
			decoder := json.NewDecoder(strings.NewReader(out.String()))
			var first, second revisionStatus
			require.NoError(t, decoder.Decode(&first))
			require.NoError(t, decoder.Decode(&second))
			require.Equal(t, "idle", first.LastDecision)
			require.Equal(t, int64(4), second.Depth)
		}
	}
}
