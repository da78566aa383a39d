package kube

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
)

// The conditions of a Function resource.
const (
	ConditionModelReady         = "ModelReady"
	ConditionReady              = "Ready"
	ConditionRolloutProgressing = "RolloutProgressing"
	ConditionRetrainRunning     = "RetrainRunning"
)

// ResourceStatus is the status of a Function resource: what the catalog and
// the autoscaler say of it, in the words kubectl shows.
type ResourceStatus struct {
	ObservedGeneration int64  `json:"observedGeneration"`
	Revision           string `json:"revision,omitempty"`
	// Replicas are the ready workers of every revision, Depth the requests
	// waiting in every revision's queue.
	Replicas int   `json:"replicas"`
	Depth    int64 `json:"depth"`
	// Weights is the traffic table, "1=90,2=10".
	Weights    string             `json:"weights,omitempty"`
	Conditions []metav1.Condition `json:"conditions"`
	// Model is the spec.model last put in the catalog: while the resource's
	// stays the same, a version a trainer published since is kept.
	Model *functions.ModelSpec `json:"model,omitempty"`
}

// Observed is what the controller saw of a function, for StatusOf.
type Observed struct {
	// Generation is the resource's metadata.generation.
	Generation int64
	// Deployed is the function in the catalog; nil when it is not there.
	Deployed *functions.Function
	// DeployErr is why the last deploy failed, if it did.
	DeployErr error
	// Scale is the autoscaler's last word on each revision.
	Scale []events.ScaleStatus
	// Previous are the conditions written last, so that a condition that
	// does not change keeps its transition time.
	Previous []metav1.Condition
	// AppliedModel is the resource's spec.model the catalog holds.
	AppliedModel *functions.ModelSpec
}

// StatusOf is the status of a Function resource: a pure function of what
// was observed, so every condition is tested with a table.
func StatusOf(obs Observed, now time.Time) ResourceStatus {
	status := ResourceStatus{ObservedGeneration: obs.Generation, Conditions: append([]metav1.Condition(nil), obs.Previous...), Model: obs.AppliedModel}
	set := func(kind string, state metav1.ConditionStatus, reason, message string) {
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{
			Type: kind, Status: state, Reason: reason, Message: message,
			ObservedGeneration: obs.Generation, LastTransitionTime: metav1.NewTime(now),
		})
	}
	for _, scale := range obs.Scale {
		status.Replicas += scale.Ready
		status.Depth += scale.Depth
	}
	fn := obs.Deployed
	if fn == nil {
		reason, message := "NotDeployed", "the function is not in the catalog yet"
		if obs.DeployErr != nil {
			reason, message = "DeployFailed", obs.DeployErr.Error()
		}
		set(ConditionModelReady, metav1.ConditionUnknown, reason, message)
		set(ConditionReady, metav1.ConditionFalse, reason, message)
		set(ConditionRolloutProgressing, metav1.ConditionFalse, "NoRollout", "")
		set(ConditionRetrainRunning, metav1.ConditionFalse, "Idle", "")
		return status
	}
	status.Revision = fn.Status.Revision
	table := fn.Status.TrafficTable()
	weights := make([]string, len(table))
	for i, target := range table {
		weights[i] = fmt.Sprintf("%s=%d", target.Revision, target.Weight)
	}
	status.Weights = strings.Join(weights, ",")
	modelReady(fn, set)
	switch {
	case obs.DeployErr != nil:
		set(ConditionReady, metav1.ConditionFalse, "DeployFailed", obs.DeployErr.Error()+" (the deployed revisions keep serving)")
	case len(table) == 0:
		_, err := fn.Status.Serving("")
		set(ConditionReady, metav1.ConditionFalse, "NoRevisionServes", fmt.Sprint(err))
	default:
		set(ConditionReady, metav1.ConditionTrue, "Serving", "requests are taken; at zero replicas they wait in the queue while a worker starts")
	}
	rolloutCondition(fn.Status.Rollout, set)
	if r := fn.Status.Retrain; r != nil && r.Run != "" {
		set(ConditionRetrainRunning, metav1.ConditionTrue, "Training", fmt.Sprintf("run %s, started by %s", r.Run, r.Trigger))
	} else {
		message := ""
		if r != nil {
			message = r.Result
		}
		set(ConditionRetrainRunning, metav1.ConditionFalse, "Idle", message)
	}
	return status
}

func modelReady(fn *functions.Function, set func(string, metav1.ConditionStatus, string, string)) {
	current, _ := fn.Status.FindRevision(fn.Status.Revision)
	switch current.State {
	case functions.RevisionReady:
		set(ConditionModelReady, metav1.ConditionTrue, "Loaded", fmt.Sprintf("revision %s's model loads", current.Name))
	case functions.RevisionFailed:
		set(ConditionModelReady, metav1.ConditionFalse, "ModelCannotRun", fmt.Sprintf("revision %s: %s", current.Name, current.Reason))
	default:
		set(ConditionModelReady, metav1.ConditionUnknown, "NotLoadedYet", fmt.Sprintf("revision %s's first worker loads it", current.Name))
	}
}

func rolloutCondition(rollout *functions.RolloutStatus, set func(string, metav1.ConditionStatus, string, string)) {
	switch {
	case rollout == nil:
		set(ConditionRolloutProgressing, metav1.ConditionFalse, "NoRollout", "")
	case rollout.Done():
		set(ConditionRolloutProgressing, metav1.ConditionFalse, string(rollout.Phase), rollout.Reason)
	default:
		set(ConditionRolloutProgressing, metav1.ConditionTrue, string(rollout.Phase), rollout.Reason)
	}
}
