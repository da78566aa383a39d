// Package kube is the autoscaler's Kubernetes scaler: it sets the replicas of
// a revision's worker Deployment through the /scale subresource and reads how
// many of them are ready. The Deployments themselves are made by functions/kube.
package kube

import (
	"context"
	"fmt"
	"math"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"sluice.dev/sluice/autoscaler"
	functionskube "sluice.dev/sluice/functions/kube"
)

// Scaler scales the worker Deployments of one namespace. It holds no state of
// its own, so several goroutines may use it at once.
type Scaler struct {
	client    kubernetes.Interface
	namespace string
}

var _ autoscaler.Scaler = (*Scaler)(nil)

// conflictBackoff paces the retries of a /scale write that lost a race: the
// controller-manager writes the Deployment's status often, so a write can
// lose several times in a row on a busy API server; 13 tries, the waits
// between them growing from 10 ms, take about five seconds together. No Cap:
// wait.Backoff ends the retries as soon as a wait would pass its Cap.
var conflictBackoff = wait.Backoff{Steps: 13, Duration: 10 * time.Millisecond, Factor: 1.6, Jitter: 0.2}

// NewScaler returns a Scaler of the worker Deployments in namespace.
func NewScaler(client kubernetes.Interface, namespace string) *Scaler {
	return &Scaler{client: client, namespace: namespace}
}

// Scale sets the replicas of the revision's Deployment through its /scale
// subresource, so it touches nothing else of the Deployment. A write that
// loses a race with another writer (409 Conflict) is read again and retried.
// The Deployment must exist: functions/kube makes it.
func (s *Scaler) Scale(ctx context.Context, function, revision string, replicas int) error {
	name := functionskube.DeploymentName(function, revision)
	if replicas < 0 || replicas > math.MaxInt32 {
		return fmt.Errorf("scale deployment %s/%s: replicas must be between 0 and %d, got %d", s.namespace, name, math.MaxInt32, replicas)
	}
	deployments := s.client.AppsV1().Deployments(s.namespace)
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		scale, err := deployments.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if scale.Spec.Replicas == int32(replicas) {
			return nil
		}
		scale.Spec.Replicas = int32(replicas)
		_, err = deployments.UpdateScale(ctx, name, scale, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("scale deployment %s/%s to %d: %w", s.namespace, name, replicas, err)
	}
	return nil
}

// Ready returns how many of the revision's workers pass their readiness probe,
// as the Deployment's status says. A revision with no Deployment yet has none.
func (s *Scaler) Ready(ctx context.Context, function, revision string) (int, error) {
	name := functionskube.DeploymentName(function, revision)
	deployment, err := s.client.AppsV1().Deployments(s.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read deployment %s/%s: %w", s.namespace, name, err)
	}
	return int(deployment.Status.ReadyReplicas), nil
}
