package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/natstest"
	"sluice.dev/sluice/events/oip"
)

// sluice runs the CLI against srvURL and returns what it printed.
func sluice(t *testing.T, srvURL string, args ...string) (string, error) {
	t.Helper()
	return sluiceAnswering(t, srvURL, "", args...)
}

// sluiceAnswering is sluice with answer as the command's input.
func sluiceAnswering(t *testing.T, srvURL, answer string, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(answer))
	root.SetArgs(append([]string{"--nats-url", srvURL}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestDLQCommands(t *testing.T) {
	srv, _, js := natstest.JetStream(t)
	ctx := context.Background()
	_, err := events.EnsureDeadLetterStream(ctx, js)
	require.NoError(t, err)
	stream, err := events.EnsureStream(ctx, js, "iris", events.DefaultQueueConfig())
	require.NoError(t, err)
	consumer, err := events.EnsureConsumer(ctx, js, "iris", "1", events.DefaultQueueConfig())
	require.NoError(t, err)
	request := nats.NewMsg(events.RequestSubject("iris", "1"))
	request.Header.Set(events.HeaderMsgID, "req-1")
	request.Data = []byte(`{"inputs":"bad"}`)
	_, err = js.PublishMsg(ctx, request)
	require.NoError(t, err)
	batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	msg := <-batch.Messages()
	require.NotNil(t, msg)
	require.NoError(t, events.PublishDeadLetter(ctx, js, msg, events.DeadLetter{Function: "iris", Revision: "1", Reason: "inputs: want a list", Attempts: 1}))
	require.NoError(t, msg.Term())

	out, err := sluice(t, srv.ClientURL(), "dlq", "list")
	require.NoError(t, err)
	require.Contains(t, out, "SEQ")
	require.Regexp(t, `1\s+iris\s+1\s+1\s+\S+\s+inputs: want a list`, out)
	out, err = sluice(t, srv.ClientURL(), "dlq", "list", "--function", "wine")
	require.NoError(t, err)
	require.NotContains(t, out, "iris")

	out, err = sluice(t, srv.ClientURL(), "dlq", "show", "1")
	require.NoError(t, err)
	require.Contains(t, out, "reason:   inputs: want a list")
	require.Contains(t, out, "Nats-Msg-Id: req-1")
	require.Contains(t, out, `{"inputs":"bad"}`)

	_, err = sluice(t, srv.ClientURL(), "dlq", "replay")
	require.ErrorContains(t, err, "--all")
	_, err = sluice(t, srv.ClientURL(), "dlq", "replay", "x")
	require.ErrorContains(t, err, "sequence")
	out, err = sluice(t, srv.ClientURL(), "dlq", "replay", "--all", "--function", "iris")
	require.NoError(t, err)
	require.Contains(t, out, "dead letter 1 replayed")
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "the request is back in its queue")

	batch, err = consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	msg = <-batch.Messages()
	require.NotNil(t, msg)
	require.NoError(t, events.PublishDeadLetter(ctx, js, msg, events.DeadLetter{Function: "iris", Revision: "1", Reason: "again"}))
	letters, err := events.ListDeadLetters(ctx, js, "")
	require.NoError(t, err)
	require.Len(t, letters, 1)
	_, err = sluice(t, srv.ClientURL(), "dlq", "show", "99")
	require.ErrorIs(t, err, events.ErrNoDeadLetter)
	require.ErrorContains(t, err, "sluice dlq list")

	// purge asks; anything but yes, or no answer at all, purges nothing.
	for _, answer := range []string{"", "n\n", "nope\n"} {
		out, err = sluiceAnswering(t, srv.ClientURL(), answer, "dlq", "purge")
		require.ErrorIs(t, err, errNotConfirmed)
		require.Contains(t, out, "Delete the dead letters of every function for good? [y/N]")
		letters, err = events.ListDeadLetters(ctx, js, "")
		require.NoError(t, err)
		require.Len(t, letters, 1, "answered %q: nothing purged", answer)
	}
	out, err = sluiceAnswering(t, srv.ClientURL(), "y\n", "dlq", "purge")
	require.NoError(t, err)
	require.Contains(t, out, "purged")
	letters, err = events.ListDeadLetters(ctx, js, "")
	require.NoError(t, err)
	require.Empty(t, letters)
	out, err = sluice(t, srv.ClientURL(), "dlq", "purge", "--yes")
	require.NoError(t, err, "--yes does not ask")
	require.NotContains(t, out, "[y/N]")
}

func TestDeadLetterInBinaryIsShownAsJSON(t *testing.T) {
	input, err := oip.NewTensor("input", []int64{1, 2}, []float32{1.5, 2})
	require.NoError(t, err)
	body, headerLength, err := oip.AppendInferenceRequestBinary(nil, &oip.InferenceRequest{ID: "r1", Inputs: []oip.Tensor{input}}, func(string) bool { return true })
	require.NoError(t, err)
	letter := events.DeadLetter{Seq: 1, Function: "iris", Data: body, Header: nats.Header{"Ce-Oipheaderlength": {strconv.Itoa(headerLength)}}}
	var out bytes.Buffer
	require.NoError(t, printDeadLetter(&out, letter))
	require.Contains(t, out.String(), "body (binary tensors, shown as JSON):\n")
	require.Contains(t, out.String(), `"data":[1.5,2]`)
}
