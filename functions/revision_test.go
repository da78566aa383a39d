package functions_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

func TestServing(t *testing.T) {
	revision := func(name string, state functions.RevisionState) functions.RevisionStatus {
		r := functions.RevisionStatus{Name: name, State: state}
		if state == functions.RevisionFailed {
			r.Reason = "ONNX Runtime says no to " + name
		}
		return r
	}
	tests := []struct {
		name      string
		status    functions.Status
		version   string
		want      string
		wantError error
		inError   string
	}{
		{name: "the current revision", status: functions.Status{Revision: "2", Revisions: []functions.RevisionStatus{revision("1", functions.RevisionReady), revision("2", functions.RevisionUnknown)}}, want: "2"},
		{name: "a failed current revision falls back to the newest that has not failed",
			status: functions.Status{Revision: "3", Revisions: []functions.RevisionStatus{revision("1", functions.RevisionReady), revision("2", functions.RevisionUnknown), revision("3", functions.RevisionFailed)}}, want: "2"},
		{name: "every revision failed", status: functions.Status{Revision: "2", Revisions: []functions.RevisionStatus{revision("1", functions.RevisionFailed), revision("2", functions.RevisionFailed)}},
			wantError: functions.ErrModelCannotRun, inError: "revision 2: ONNX Runtime says no to 2"},
		{name: "an older version asked for", status: functions.Status{Revision: "2", Revisions: []functions.RevisionStatus{revision("1", functions.RevisionReady), revision("2", functions.RevisionReady)}}, version: "1", want: "1"},
		{name: "a failed version asked for", status: functions.Status{Revision: "2", Revisions: []functions.RevisionStatus{revision("1", functions.RevisionReady), revision("2", functions.RevisionFailed)}}, version: "2",
			wantError: functions.ErrModelCannotRun, inError: "ONNX Runtime says no to 2"},
		{name: "a version that is not live", status: functions.Status{Revision: "2", Revisions: []functions.RevisionStatus{revision("2", functions.RevisionReady)}}, version: "1",
			wantError: functions.ErrNotFound, inError: `no version "1" (live: [2])`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := test.status.Serving(test.version)
			if test.wantError != nil {
				require.ErrorIs(t, err, test.wantError)
				require.ErrorContains(t, err, test.inError)
				return
			}
			require.NoError(t, err)
			require.Equal(t, test.want, got.Name)
		})
	}
}

// checkerFunc is a ModelChecker that refuses what refuse says to.
type checkerFunc func(model []byte) error

func (f checkerFunc) CheckModel(model []byte, _ oip.Signature, _ functions.RuntimeSpec) error {
	return f(model)
}

func TestDeployChecksNewRevisions(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	ctx := context.Background()
	good, bad := irisModel(t, 1), irisModel(t, 2)
	checked := 0
	deployer.WithChecker(checkerFunc(func(model []byte) error {
		checked++
		if string(model) == string(bad) {
			return errors.New("Could not find an implementation for Add(6)")
		}
		return nil
	}))

	fn, err := deployer.Deploy(ctx, parse(t, irisYAML), good)
	require.NoError(t, err)
	require.Equal(t, functions.RevisionReady, fn.Status.Revisions[0].State)

	fn, err = deployer.Deploy(ctx, parse(t, irisYAML), bad)
	require.NoError(t, err, "a model that cannot run is registered, as Failed")
	require.Equal(t, "2", fn.Status.Revision)
	require.Equal(t, functions.RevisionFailed, fn.Status.Revisions[1].State)
	require.Equal(t, "Could not find an implementation for Add(6)", fn.Status.Revisions[1].Reason)
	serving, err := fn.Status.Serving("")
	require.NoError(t, err)
	require.Equal(t, "1", serving.Name, "the working revision keeps serving")
	require.Equal(t, functions.RolloutRolledBack, fn.Status.Rollout.Phase, "a rollout of a model that cannot run ends at once")
	require.Contains(t, fn.Status.Rollout.Reason, "Could not find an implementation for Add(6)")
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 100}}, fn.Status.TrafficTable())

	rescaled := parse(t, irisYAML)
	rescaled.Spec.Scaling.MaxReplicas = 2
	_, err = deployer.Deploy(ctx, rescaled, bad)
	require.NoError(t, err)
	require.Equal(t, 2, checked, "a deploy that cuts no revision loads nothing")

	stored, err := catalog.Get(ctx, "iris")
	require.NoError(t, err)
	require.Equal(t, functions.RevisionFailed, stored.Status.Revisions[1].State, "the state outlives deploys that keep the revision")
}

func TestSetRevisionState(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	ctx := context.Background()
	_, err := deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 1))
	require.NoError(t, err)

	require.NoError(t, catalog.SetRevisionState(ctx, "iris", "1", functions.RevisionFailed, "no kernel"))
	fn, err := catalog.Get(ctx, "iris")
	require.NoError(t, err)
	require.Equal(t, functions.RevisionFailed, fn.Status.Revisions[0].State)
	require.Equal(t, "no kernel", fn.Status.Revisions[0].Reason)
	_, err = fn.Status.Serving("")
	require.ErrorIs(t, err, functions.ErrModelCannotRun)

	require.NoError(t, catalog.SetRevisionState(ctx, "iris", "7", functions.RevisionReady, ""), "a revision no longer live is left alone")
	require.ErrorIs(t, catalog.SetRevisionState(ctx, "nope", "1", functions.RevisionReady, ""), functions.ErrNotFound)
}

func TestRegistryRefreshReadsWhatTheWatchHasNotBrought(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	ctx := context.Background()
	registry := functions.NewRegistry(catalog) // not running: its watch brings nothing
	_, ok := registry.Lookup("iris")
	require.False(t, ok)

	fn, ok, err := registry.Refresh(ctx, "iris")
	require.NoError(t, err)
	require.False(t, ok)
	require.Nil(t, fn)

	_, err = deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 1))
	require.NoError(t, err)
	fn, ok, err = registry.Refresh(ctx, "iris")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1", fn.Status.Revision)
	held, ok := registry.Lookup("iris")
	require.True(t, ok, "what Refresh read is kept")
	require.Same(t, fn, held)

	// A watch started afterwards brings the key at the revision already held.
	_, err = deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 2))
	require.NoError(t, err)
	fn, _, err = registry.Refresh(ctx, "iris")
	require.NoError(t, err)
	require.Equal(t, "2", fn.Status.Revision)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- registry.Run(runCtx) }()
	<-registry.Synced()
	cancel()
	require.NoError(t, <-done)
	fn, _ = registry.Lookup("iris")
	require.Equal(t, "2", fn.Status.Revision)
}

func TestANewRevisionRollsOutWhenTheSpecSaysSo(t *testing.T) {
	_, _, deployer := newDeployer(t)
	ctx := t.Context()
	at := func(steps ...int) *functions.Function {
		fn := parse(t, irisYAML)
		fn.Spec.Rollout = &functions.RolloutSpec{Steps: steps}
		return fn
	}
	first, err := deployer.Deploy(ctx, at(10, 50, 100), irisModel(t, 1))
	require.NoError(t, err)
	require.Nil(t, first.Status.Rollout, "the first revision has nothing to roll out from")

	second, err := deployer.Deploy(ctx, at(10, 50, 100), irisModel(t, 2))
	require.NoError(t, err)
	require.Equal(t, "2", second.Status.Revision)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 90}, {Revision: "2", Weight: 10}}, second.Status.Traffic)
	require.Equal(t, functions.RolloutProgressing, second.Status.Rollout.Phase)

	rescaled := at(10, 50, 100)
	rescaled.Spec.Scaling.MaxReplicas = 8
	third, err := deployer.Deploy(ctx, rescaled, irisModel(t, 2))
	require.NoError(t, err)
	require.Equal(t, second.Status.Traffic, third.Status.Traffic, "a deploy that cuts no revision leaves the rollout alone")
	require.Equal(t, second.Status.Rollout, third.Status.Rollout)

	replaced, err := deployer.Deploy(ctx, at(25, 100), irisModel(t, 3))
	require.NoError(t, err)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 75}, {Revision: "3", Weight: 25}}, replaced.Status.Traffic,
		"a candidate replaced mid-rollout: the new one rolls out from the stable revision")

	atOnce, err := deployer.Deploy(ctx, parse(t, "metadata: {name: iris}\nspec: {model: {path: iris.onnx}}\n"), irisModel(t, 4))
	require.NoError(t, err)
	require.Nil(t, atOnce.Status.Traffic, "without a rollout the new revision takes all traffic")
	require.Nil(t, atOnce.Status.Rollout)
	require.Equal(t, "4", atOnce.Status.TrafficTable()[0].Revision)
}

func TestSpecTrafficPinsTheWeights(t *testing.T) {
	_, _, deployer := newDeployer(t)
	ctx := t.Context()
	pinned := func(traffic functions.Traffic) *functions.Function {
		fn := parse(t, irisYAML)
		fn.Spec.Traffic = traffic
		return fn
	}
	_, err := deployer.Deploy(ctx, parse(t, irisYAML), irisModel(t, 1))
	require.NoError(t, err)
	second, err := deployer.Deploy(ctx, pinned(functions.Traffic{{Revision: "1", Weight: 100}}), irisModel(t, 2))
	require.NoError(t, err)
	require.Equal(t, "2", second.Status.Revision)
	require.Nil(t, second.Status.Rollout, "a pinned function starts no rollout")
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 100}}, second.Status.TrafficTable(), "the new revision takes nothing until named")

	split, err := deployer.Deploy(ctx, pinned(functions.Traffic{{Revision: "1", Weight: 70}, {Revision: "2", Weight: 30}}), irisModel(t, 2))
	require.NoError(t, err)
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 70}, {Revision: "2", Weight: 30}}, split.Status.TrafficTable())

	_, err = deployer.Deploy(ctx, pinned(functions.Traffic{{Revision: "9", Weight: 100}}), irisModel(t, 2))
	require.ErrorContains(t, err, `spec.traffic[0].revision: no live revision "9" (live: [1 2])`)

	wrongSum := pinned(functions.Traffic{{Revision: "1", Weight: 70}, {Revision: "1", Weight: 20}})
	err = wrongSum.Validate()
	require.ErrorContains(t, err, "spec.traffic: the weights must sum to 100, got 90")
	require.ErrorContains(t, err, `spec.traffic[1].revision: revision "1" is named twice`)

	withSum := parse(t, irisYAML)
	withSum.Spec.Model.SHA256 = strings.Repeat("0", 64)
	_, err = deployer.Deploy(ctx, withSum, irisModel(t, 3))
	require.ErrorContains(t, err, "spec.model.sha256")
}

func TestDeployImportsAModelFromAURL(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	model := irisModel(t, 1)
	server, downloads, sum := serveCounted(t, model)
	byURL := func(sha string) *functions.Function {
		return parse(t, "metadata: {name: iris}\nspec: {model: {uri: "+server.URL+"/iris.onnx, sha256: '"+sha+"'}}\n")
	}
	fn, err := deployer.Deploy(t.Context(), byURL(sum), nil)
	require.NoError(t, err)
	stored, err := catalog.GetModel(t.Context(), *fn.Status.Model)
	require.NoError(t, err)
	require.Equal(t, model, stored)
	_, err = deployer.Deploy(t.Context(), byURL(sum), nil)
	require.NoError(t, err)
	require.Equal(t, int32(1), downloads.Load(), "a model stored already is not downloaded again")

	_, err = deployer.Deploy(t.Context(), byURL(strings.Repeat("0", 64)), nil)
	require.ErrorContains(t, err, "spec.model.sha256: what "+server.URL+"/iris.onnx serves: sha256 is")
	require.ErrorContains(t, parse(t, "metadata: {name: iris}\nspec: {model: {uri: "+server.URL+"/iris.onnx}}\n").Validate(), "spec.model.sha256: an http(s) uri needs")
}

func TestDeployImportsBaseDataFromAURL(t *testing.T) {
	_, catalog, deployer := newDeployer(t)
	data := []byte("a,b,species\n1,2,x\n3,4,y\n")
	server, downloads, sum := serveCounted(t, data)
	withData := func(sha string) *functions.Function {
		return parse(t, "metadata: {name: iris}\nspec: {model: {path: m.onnx}, retrain: {data: {uri: "+server.URL+"/iris.csv, sha256: '"+sha+"'}}}\n")
	}
	fn, err := deployer.Deploy(t.Context(), withData(sum), irisModel(t, 1))
	require.NoError(t, err)
	stored, err := catalog.GetObject(t.Context(), functions.DataObject(fn))
	require.NoError(t, err)
	require.Equal(t, data, stored, "the data is in the model store, where trainers read it")
	require.Equal(t, server.URL+"/iris.csv", fn.Spec.Retrain.Data.URI, "the spec keeps the URL it was given")
	_, err = deployer.Deploy(t.Context(), withData(sum), irisModel(t, 1))
	require.NoError(t, err)
	require.Equal(t, int32(1), downloads.Load(), "data stored already is not downloaded again")

	_, err = deployer.Deploy(t.Context(), withData(strings.Repeat("0", 64)), irisModel(t, 1))
	require.ErrorContains(t, err, "spec.retrain.data.sha256: what "+server.URL+"/iris.csv serves: sha256 is")
	noSum := parse(t, "metadata: {name: iris}\nspec: {model: {path: m.onnx}, retrain: {data: {uri: "+server.URL+"/iris.csv}}}\n")
	noSum.Default()
	require.ErrorContains(t, noSum.Validate(), "spec.retrain.data.sha256: an http(s) uri needs")
}

// serveCounted serves body over HTTP until the test ends, and returns the
// server, how many times body was fetched, and body's sha256.
func serveCounted(t *testing.T, body []byte) (*httptest.Server, *atomic.Int32, string) {
	t.Helper()
	downloads := &atomic.Int32{}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		downloads.Add(1)
		_, _ = w.Write(body)
	}))
	t.Cleanup(server.Close)
	sum := sha256.Sum256(body)
	return server, downloads, hex.EncodeToString(sum[:])
}
