package e2e

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/batch"
)

// The queue alone is the floor of batch scoring through a queue, which
// BenchmarkBatchScoring measures beside Sluice: each chunk's request and
// answer, byte for byte, through what Sluice's chunks take (a work-queue
// stream and a results bucket on file storage, on the same embedded
// nats-server, and two consumer processes that put each answer in the
// bucket, announce it and ack), with none of Sluice's work: no text, no
// codec, no model. The consumers are `sluice bench --hops-consumer`, the
// consumer of the sync anchor's hops (cmd/sluice/bench_hops.go); these are
// the names it consumes and the headers it reads.
const (
	hopsStream      = "hops"
	hopsBucket      = "hops-results"
	hopsRequests    = "hops.req"
	hopsRecord      = "Hops-Record"
	hopsAnswerBytes = "Hops-Answer-Bytes"
	hopsAnnounce    = "Hops-Announce"
	// anchorResults is where the queue alone's answers are announced.
	anchorResults = "anchor.res"
)

// queueAnchor publishes the chunks of the queue alone and waits for their announcements.
type queueAnchor struct {
	js          jetstream.JetStream
	request     []byte // one chunk's request, as the batch client publishes it
	answerBytes int    // and the size of its answer, as a worker announces it
	inFlight    int
	run         int
}

// startQueueAnchor makes the queue alone's stream, consumer and bucket on
// srv, and starts its consumer processes.
func startQueueAnchor(tb testing.TB, srv *server.Server, js jetstream.JetStream, request []byte, answerBytes, consumers int) *queueAnchor {
	tb.Helper()
	ctx := tb.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: hopsStream, Subjects: []string{hopsRequests},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	require.NoError(tb, err)
	_, err = stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: hopsStream, AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(tb, err)
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: hopsBucket, History: 1, TTL: 24 * time.Hour, Storage: jetstream.FileStorage})
	require.NoError(tb, err)
	for range consumers {
		cmd := exec.Command(binary, "bench", "--hops-consumer", srv.ClientURL())
		cmd.Stderr = os.Stderr
		ready, err := cmd.StdoutPipe()
		require.NoError(tb, err)
		require.NoError(tb, cmd.Start())
		tb.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		})
		_, err = io.ReadFull(ready, make([]byte, 1)) // one byte once it consumes
		require.NoError(tb, err, "a consumer of the queue alone did not start")
	}
	return &queueAnchor{js: js, request: request, answerBytes: answerBytes, inFlight: batch.DefaultConfig().InFlight}
}

// score sends rows through the queue alone in chunks of rowsPerRequest, at
// most inFlight of them unanswered, as the batch client does, and returns
// once every chunk is announced, or fails after a minute.
func (a *queueAnchor) score(ctx context.Context, rows, rowsPerRequest int) (batch.Report, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	a.run++
	chunks := (rows + rowsPerRequest - 1) / rowsPerRequest
	slots := make(chan struct{}, a.inFlight)
	announced := make(chan struct{}, chunks)
	sub, err := a.js.Conn().Subscribe(anchorResults, func(*nats.Msg) {
		<-slots
		announced <- struct{}{}
	})
	if err != nil {
		return batch.Report{}, err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, 256<<20); err != nil {
		return batch.Report{}, err
	}
	acks := make(chan jetstream.PubAckFuture, a.inFlight)
	acked := make(chan error, 1)
	go func() { // every publish's ack, awaited as the batch client does; the first error
		var first error
		for future := range acks {
			select {
			case <-future.Ok():
			case err := <-future.Err():
				first = cmp.Or(first, err)
			}
		}
		acked <- first
	}()
	err = a.publish(ctx, chunks, slots, acks)
	close(acks)
	if err := cmp.Or(err, <-acked); err != nil {
		return batch.Report{}, fmt.Errorf("the queue alone: %w", err)
	}
	for range chunks {
		select {
		case <-announced:
		case <-ctx.Done():
			return batch.Report{}, fmt.Errorf("the queue alone: not every chunk announced: %w", ctx.Err())
		}
	}
	return batch.Report{Scored: rows, Elapsed: time.Since(start)}, nil
}

// publish publishes chunks requests, each once a slot is free, and hands
// their acks on.
func (a *queueAnchor) publish(ctx context.Context, chunks int, slots chan<- struct{}, acks chan<- jetstream.PubAckFuture) error {
	for i := range chunks {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		key := fmt.Sprintf("run%d-chunk%d", a.run, i)
		msg := nats.NewMsg(hopsRequests)
		msg.Data = a.request
		msg.Header.Set(jetstream.MsgIDHeader, key)
		msg.Header.Set(hopsRecord, key)
		msg.Header.Set(hopsAnswerBytes, strconv.Itoa(a.answerBytes))
		msg.Header.Set(hopsAnnounce, anchorResults)
		future, err := a.js.PublishMsgAsync(msg)
		if err != nil {
			return err
		}
		acks <- future
	}
	return nil
}

// irisChunk is the request the batch client publishes for a chunk of rows
// Iris rows, and the size of the answer a worker gives it with model.
func irisChunk(tb testing.TB, rows int, model batch.Model) (request []byte, answerBytes int) {
	tb.Helper()
	values := make([]float32, 0, 4*rows)
	for i := range rows {
		values = append(values, irisRow(i)...)
	}
	input := oip.Tensor{Name: "input", Shape: []int64{int64(rows), 4}, Datatype: oip.FP32, Data: values}
	all := func(string) bool { return true }
	request, _, err := oip.AppendInferenceRequestBinary(nil, &oip.InferenceRequest{ID: "0123456789abcdef-0", Inputs: []oip.Tensor{input},
		Parameters: map[string]any{"binary_data_output": true}}, all)
	require.NoError(tb, err)
	outputs, err := model.Run([]oip.Tensor{input})
	require.NoError(tb, err)
	answer, _, err := oip.AppendInferenceResponseBinary(nil, &oip.InferenceResponse{ModelName: "iris", ModelVersion: "1", ID: "0123456789abcdef-0", Outputs: outputs}, all)
	require.NoError(tb, err)
	return request, len(answer)
}
