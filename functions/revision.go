package functions

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"sluice.dev/sluice/events/oip"
)

// RevisionState says whether a revision's model has been seen to load into an
// ONNX Runtime session.
type RevisionState string

// The states of a revision. A revision starts Unknown unless its deploy
// loaded the model; the first worker that loads it, or fails to, settles it.
const (
	RevisionUnknown RevisionState = ""
	RevisionReady   RevisionState = "Ready"
	RevisionFailed  RevisionState = "Failed"
)

// ErrModelCannotRun says a revision's model does not load: callers get 503
// with the reason, at once, rather than wait for a worker that cannot start.
var ErrModelCannotRun = errors.New("model cannot run")

// ModelChecker loads a model once, to learn before a revision takes traffic
// whether ONNX Runtime runs it; the error is ONNX Runtime's own.
type ModelChecker interface {
	CheckModel(model []byte, signature oip.Signature, runtime RuntimeSpec) error
}

// Serving returns the revision that takes a request: the named version if
// one is asked for, else the current revision, or, when its model cannot
// run, the newest older revision whose model has not failed, so a bad model
// never takes a working function down. A version that is not live gives an
// error wrapping ErrNotFound; a failed one, ErrModelCannotRun with its reason.
func (s Status) Serving(version string) (RevisionStatus, error) {
	if version != "" {
		revision, ok := s.FindRevision(version)
		if !ok {
			return RevisionStatus{}, fmt.Errorf("%w: no version %q (live: %s)", ErrNotFound, version, s.liveNames())
		}
		return revision, revision.cannotRun()
	}
	current, ok := s.FindRevision(s.Revision)
	if !ok {
		return RevisionStatus{}, fmt.Errorf("%w: the current revision %q is not live", ErrNotFound, s.Revision)
	}
	if current.State != RevisionFailed {
		return current, nil
	}
	for _, older := range slices.Backward(s.Revisions) {
		if older.State != RevisionFailed {
			return older, nil
		}
	}
	return RevisionStatus{}, current.cannotRun()
}

// cannotRun is ErrModelCannotRun with the reason when the revision failed.
func (r RevisionStatus) cannotRun() error {
	if r.State != RevisionFailed {
		return nil
	}
	return fmt.Errorf("%w: revision %s: %s", ErrModelCannotRun, r.Name, r.Reason)
}

func (s Status) liveNames() string {
	names := make([]string, len(s.Revisions))
	for i, r := range s.Revisions {
		names[i] = r.Name
	}
	return fmt.Sprint(names)
}

// SetRevisionState records whether revision of the named function loads,
// with the reason when it does not. A revision no longer live, or already in
// that state, is left as it is.
func (c *Catalog) SetRevisionState(ctx context.Context, name, revision string, state RevisionState, reason string) error {
	_, err := c.Modify(ctx, name, func(fn *Function) (bool, error) {
		index := slices.IndexFunc(fn.Status.Revisions, func(r RevisionStatus) bool { return r.Name == revision })
		if index < 0 || (fn.Status.Revisions[index].State == state && fn.Status.Revisions[index].Reason == reason) {
			return false, nil
		}
		fn.Status.Revisions = slices.Clone(fn.Status.Revisions)
		fn.Status.Revisions[index].State, fn.Status.Revisions[index].Reason = state, reason
		return true, nil
	})
	return err
}
