package kube

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/functions"
	functionskube "sluice.dev/sluice/functions/kube"
)

// catalogView is what EnsureDeployments reads of the deployed functions.
type catalogView interface {
	Names() []string
	Lookup(name string) (*functions.Function, bool)
}

// EnsureDeployments creates, at 0 replicas, the worker Deployment of every
// live revision of every function that does not have one yet. It never
// changes an existing Deployment's replicas: those belong to the autoscaler.
func EnsureDeployments(ctx context.Context, client kubernetes.Interface, view catalogView, cfg functionskube.WorkerConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	deployments := client.AppsV1().Deployments(cfg.Namespace)
	var errs []error
	for _, name := range view.Names() {
		fn, ok := view.Lookup(name)
		if !ok {
			continue
		}
		for _, revision := range fn.Status.Revisions {
			deployment := functionskube.Deployment(fn, revision, cfg)
			_, err := deployments.Create(ctx, deployment, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("create deployment %s/%s: %w", cfg.Namespace, deployment.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
