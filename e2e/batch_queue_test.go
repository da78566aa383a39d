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

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions/batch"
)

// The queue alone is the floor of batch scoring through a queue, which
// BenchmarkBatchScoring measures beside Sluice: each chunk's request and
// answer, byte for byte, through what Sluice's chunks take (a work-queue
// stream and a results bucket on file storage, on the same embedded
// nats-server, and two consumer processes that put each answer in the
// bucket, announce it and ack), with none of Sluice's work: no text, no
// codec, no model. The consumers are `sluice bench --hops-consumer`, the
// consumer of the sync anchor's hops (cmd/sluice/bench_hops.go), which make
// the stream, consumer and bucket; these are the subject it consumes and
// the headers it reads.
const (
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

// startQueueAnchor starts the queue alone's consumer processes on srv.
func startQueueAnchor(tb testing.TB, srv *server.Server, js jetstream.JetStream, request []byte, answerBytes, consumers int) *queueAnchor {
	tb.Helper()
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
// once every chunk is announced, or fails after a minute. Its report counts
// as scored the rows of each chunk announced with an answer of the size a
// worker gives, once.
func (a *queueAnchor) score(ctx context.Context, rows, rowsPerRequest int) (batch.Report, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	a.run++
	keys := make([]string, 0, (rows+rowsPerRequest-1)/rowsPerRequest)
	chunkRows := map[string]int{}
	for first := 0; first < rows; first += rowsPerRequest {
		key := fmt.Sprintf("run%d-chunk%d", a.run, len(keys))
		keys, chunkRows[key] = append(keys, key), min(rowsPerRequest, rows-first)
	}
	slots := make(chan struct{}, a.inFlight)
	announced := make(chan struct{}, len(keys))
	scored := 0
	sub, err := a.js.Conn().Subscribe(anchorResults, func(msg *nats.Msg) {
		key := msg.Header.Get(hopsRecord)
		n, ours := chunkRows[key]
		if !ours {
			return // another run's, or announced before
		}
		delete(chunkRows, key)
		if len(msg.Data) == a.answerBytes {
			scored += n
		}
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
	err = a.publish(ctx, keys, slots, acks)
	close(acks)
	if err := cmp.Or(err, <-acked); err != nil {
		return batch.Report{}, fmt.Errorf("the queue alone: %w", err)
	}
	for range keys {
		select {
		case <-announced:
		case <-ctx.Done():
			return batch.Report{}, fmt.Errorf("the queue alone: not every chunk announced: %w", ctx.Err())
		}
	}
	return batch.Report{Scored: scored, Elapsed: time.Since(start)}, nil // scored: written before the last announcement
}

// publish publishes a request for each chunk of keys, once a slot is free,
// and hands their acks on.
func (a *queueAnchor) publish(ctx context.Context, keys []string, slots chan<- struct{}, acks chan<- jetstream.PubAckFuture) error {
	for _, key := range keys {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
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

// firstChunk is the first request Sluice's batch client publishes for iris
// and the first answer a worker announces, taken as they go by.
type firstChunk struct{ requests, answers chan []byte }

// captureFirstChunk subscribes, for one message each, before the batch runs.
func captureFirstChunk(tb testing.TB, nc *nats.Conn) *firstChunk {
	tb.Helper()
	c := &firstChunk{requests: make(chan []byte, 1), answers: make(chan []byte, 1)}
	for subject, into := range map[string]chan []byte{events.RequestSubjects("iris"): c.requests, events.ResultSubject("iris"): c.answers} {
		sub, err := nc.Subscribe(subject, func(msg *nats.Msg) { into <- msg.Data })
		require.NoError(tb, err)
		require.NoError(tb, sub.AutoUnsubscribe(1))
	}
	return c
}

// take is the request and the size of the answer, once both have gone by.
func (c *firstChunk) take(tb testing.TB) (request []byte, answerBytes int) {
	tb.Helper()
	receive := func(ch chan []byte) []byte {
		select {
		case data := <-ch:
			return data
		case <-time.After(10 * time.Second):
			tb.Fatal("no chunk of the batch went by")
			return nil
		}
	}
	return receive(c.requests), len(receive(c.answers))
}
