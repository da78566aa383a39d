package kube_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/functions/kube"
)

func TestStatusOf(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	deployed := func(change func(*functions.Status)) *functions.Function {
		fn := &functions.Function{Status: functions.Status{Revision: "2", Revisions: []functions.RevisionStatus{
			{Name: "1", State: functions.RevisionReady}, {Name: "2", State: functions.RevisionReady},
		}}}
		if change != nil {
			change(&fn.Status)
		}
		return fn
	}
	type want struct {
		condition string
		status    metav1.ConditionStatus
		reason    string
	}
	cases := []struct {
		name  string
		obs   kube.Observed
		wants []want
	}{
		{
			name:  "not deployed yet",
			obs:   kube.Observed{Generation: 1},
			wants: []want{{kube.ConditionReady, metav1.ConditionFalse, "NotDeployed"}, {kube.ConditionModelReady, metav1.ConditionUnknown, "NotDeployed"}},
		},
		{
			name:  "a deploy that failed",
			obs:   kube.Observed{Generation: 1, DeployErr: errors.New(`model "x": not found`)},
			wants: []want{{kube.ConditionReady, metav1.ConditionFalse, "DeployFailed"}},
		},
		{
			name: "serving",
			obs:  kube.Observed{Generation: 3, Deployed: deployed(nil), Scale: []events.ScaleStatus{{Ready: 2, Depth: 5}, {Ready: 1, Depth: 1}}},
			wants: []want{
				{kube.ConditionReady, metav1.ConditionTrue, "Serving"}, {kube.ConditionModelReady, metav1.ConditionTrue, "Loaded"},
				{kube.ConditionRolloutProgressing, metav1.ConditionFalse, "NoRollout"}, {kube.ConditionRetrainRunning, metav1.ConditionFalse, "Idle"},
			},
		},
		{
			name: "a model that cannot run, an older revision serving",
			obs: kube.Observed{Generation: 2, Deployed: deployed(func(s *functions.Status) {
				s.Revisions[1].State, s.Revisions[1].Reason = functions.RevisionFailed, "no kernel for Add(6)"
			})},
			wants: []want{{kube.ConditionModelReady, metav1.ConditionFalse, "ModelCannotRun"}, {kube.ConditionReady, metav1.ConditionTrue, "Serving"}},
		},
		{
			name: "rolling out and training",
			obs: kube.Observed{Generation: 2, Deployed: deployed(func(s *functions.Status) {
				s.Rollout = &functions.RolloutStatus{Stable: "1", Candidate: "2", Phase: functions.RolloutProgressing, Weight: 10, Reason: "weight 10%: held 3s of 1m0s"}
				s.Traffic = s.Rollout.Traffic()
				s.Retrain = &functions.RetrainStatus{Run: "iris-train-3-abcdef", Trigger: "drift"}
			})},
			wants: []want{{kube.ConditionRolloutProgressing, metav1.ConditionTrue, "Progressing"}, {kube.ConditionRetrainRunning, metav1.ConditionTrue, "Training"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status := kube.StatusOf(c.obs, now)
			require.Equal(t, c.obs.Generation, status.ObservedGeneration)
			for _, w := range c.wants {
				var found *metav1.Condition
				for i := range status.Conditions {
					if status.Conditions[i].Type == w.condition {
						found = &status.Conditions[i]
					}
				}
				require.NotNil(t, found, w.condition)
				require.Equal(t, w.status, found.Status, "%s: %s", w.condition, found.Message)
				require.Equal(t, w.reason, found.Reason, w.condition)
			}
		})
	}
	serving := kube.StatusOf(cases[2].obs, now)
	require.Equal(t, 3, serving.Replicas)
	require.EqualValues(t, 6, serving.Depth)
	require.Equal(t, "2=100", serving.Weights)
	rolling := kube.StatusOf(cases[4].obs, now)
	require.Equal(t, "1=90,2=10", rolling.Weights)

	later := kube.StatusOf(kube.Observed{Generation: 3, Deployed: deployed(nil), Previous: serving.Conditions}, now.Add(time.Hour))
	require.Equal(t, serving.Conditions, later.Conditions, "a condition that does not change keeps its transition time")
}
