package activator

import (
	"context"
	"reflect"
	"slices"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// maxShadows bounds the shadow copies waiting for their answer: past it, a
// request gets no copy rather than the activator more goroutines.
const maxShadows = 256

// shadowSuffix ends the id of a shadow copy: its answer and prediction are
// the candidate's own, never the request's.
const shadowSuffix = "#shadow"

// shadow sends the candidate of a rollout in shadow (functions.Status.Shadow)
// a copy of ev, a synchronous request routed to fn's revision, and returns
// what to call with that revision's answer: off the caller's path, it waits
// for the candidate's answer, compares the two and counts the comparison
// for the agreement gate. Without a shadow it sends nothing.
func (a *Activator) shadow(ctx context.Context, fn *functions.Function, ev *event.Event, pinned bool) (compare func(*nats.Msg, error)) {
	ignore := func(*nats.Msg, error) {}
	candidate, ok := fn.Status.Shadow(fn.Status.Revision)
	if pinned || !ok {
		return ignore
	}
	select {
	case a.shadows <- struct{}{}:
	default:
		return ignore
	}
	deadline := time.Now().Add(fn.Spec.Timeouts.Request.Duration)
	replyTo, replies, stopWaiting := a.inbox.register(fn.Metadata.Name)
	copied := ev.Clone()
	copied.SetID(ev.ID() + shadowSuffix)
	copied.SetExtension(events.ExtensionModelVersion, candidate.Name)
	a.waker.wake(fn.Metadata.Name, candidate.Name)
	msg, err := requestMessage(ctx, fn.Metadata.Name, candidate.Name, &copied, replyTo, deadline, "")
	if err == nil {
		_, err = a.js.PublishMsgAsync(msg)
	}
	if err != nil {
		stopWaiting()
		<-a.shadows
		return ignore
	}
	a.shadowing.Add(1)
	return func(stable *nats.Msg, stableErr error) {
		go func() {
			defer a.shadowing.Done()
			defer func() { <-a.shadows }()
			defer stopWaiting()
			if stableErr != nil {
				return // nothing to compare with; the candidate's worker counts its own failures
			}
			timer := time.NewTimer(time.Until(deadline))
			defer timer.Stop()
			select {
			case reply := <-replies:
				a.counter.Add(fn.Metadata.Name, candidate.Name, functions.Counts{Compared: 1, Disagreed: a.disagree(stable, reply)})
			case <-timer.C:
			case <-a.stopShadows:
			}
		}()
	}
}

// disagree is 1 when the candidate's answer differs from the stable one.
func (a *Activator) disagree(stable, candidate *nats.Msg) int64 {
	if candidate.Header.Get(events.HeaderStatus) != "" {
		return 1
	}
	if name := candidate.Header.Get(events.HeaderAnswerObject); name != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		data, err := events.ReadAnswer(ctx, a.answers, name, true)
		if err != nil {
			return 1
		}
		candidate.Data = data
	}
	stableAnswer, stableErr := decodeAnswer(stable)
	candidateAnswer, candidateErr := decodeAnswer(candidate)
	if stableErr != nil || candidateErr != nil || !agree(stableAnswer.Outputs, candidateAnswer.Outputs) {
		return 1
	}
	return 0
}

func decodeAnswer(msg *nats.Msg) (*oip.InferenceResponse, error) {
	headerLength, err := events.InferenceHeaderLengthOf(msg.Header)
	if err != nil {
		return nil, err
	}
	if headerLength > 0 {
		return oip.DecodeInferenceResponseBinary(msg.Data, headerLength, workerAnswerLimits)
	}
	return oip.DecodeInferenceResponse(msg.Data, workerAnswerLimits)
}

// agree says whether two answers agree: their labels — every output that is
// not floating point — equal, or, for a model whose outputs are all floating
// point, every value within 1 % (and 1e-6) of the stable one.
func agree(stable, candidate []oip.Tensor) bool {
	compared := slices.DeleteFunc(slices.Clone(stable), func(t oip.Tensor) bool { return isFloat(t.Datatype) })
	if len(compared) == 0 {
		compared = stable
	}
	for _, want := range compared {
		got, ok := oip.FindTensor(candidate, want.Name)
		if !ok || got.Datatype != want.Datatype || !slices.Equal(got.Shape, want.Shape) {
			return false
		}
		if !isFloat(want.Datatype) {
			if !reflect.DeepEqual(got.Data, want.Data) {
				return false
			}
			continue
		}
		wantValues, _ := want.Float64s()
		gotValues, _ := got.Float64s()
		for i, value := range wantValues {
			if diff := gotValues[i] - value; max(diff, -diff) > 0.01*max(value, -value)+1e-6 {
				return false
			}
		}
	}
	return true
}

func isFloat(dt oip.Datatype) bool { return dt == oip.FP16 || dt == oip.FP32 || dt == oip.FP64 }
