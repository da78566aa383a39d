package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/functions"
)

// FunctionResource is the Function CRD's resource.
var FunctionResource = schema.GroupVersionResource{Group: "sluice.dev", Version: "v1alpha1", Resource: "functions"}

// Finalizer holds a Function resource until its function has left the
// catalog and its queue is deleted.
const Finalizer = "sluice.dev/cleanup"

// ControllerConfig says what the controller watches and how it works.
type ControllerConfig struct {
	// Workers is the worker Deployments' template; its Namespace is the one
	// namespace whose Function resources the controller reconciles.
	Workers WorkerConfig
	// Threads reconcile different Functions at once.
	Threads int
	// Resync reconciles every Function this often besides its changes.
	Resync time.Duration
	// CleanupTimeout bounds the removal of a deleted Function from NATS: past
	// it the resource is let go anyway, with a warning.
	CleanupTimeout time.Duration
	// Authority, when set, signs each worker Deployment's own NATS user
	// (events/access.Worker), kept in a Secret beside it; Workers.NATSCredentials
	// must be set too.
	Authority *access.Authority
}

// DefaultControllerConfig reconciles with 2 threads, at each change of a
// resource, of the catalog or of the autoscaler's status, and every minute.
func DefaultControllerConfig() ControllerConfig {
	return ControllerConfig{Workers: DefaultWorkerConfig(), Threads: 2, Resync: time.Minute, CleanupTimeout: 20 * time.Second}
}

// Validate reports what is wrong.
func (c ControllerConfig) Validate() error {
	if c.Threads < 1 || c.Resync <= 0 || c.CleanupTimeout <= 0 {
		return fmt.Errorf("controller: Threads, Resync and CleanupTimeout must be positive, got %d, %s and %s", c.Threads, c.Resync, c.CleanupTimeout)
	}
	if (c.Authority != nil) != c.Workers.NATSCredentials {
		return errors.New("controller: Authority and Workers.NATSCredentials go together: workers mount the credentials the Authority signs")
	}
	return c.Workers.Validate()
}

// Controller reconciles Function resources, in the sample-controller way:
// an informer feeds keys into a rate-limited work queue, and each of
// Threads goroutines calls sync for one key at a time. sync puts the
// function in the catalog (the Deployer), keeps a worker Deployment for each
// live revision (owned by the resource, so that Kubernetes deletes them
// with it), writes the resource's status, and, on deletion, takes the
// function out of NATS before it lets the resource go.
type Controller struct {
	client   kubernetes.Interface
	dynamic  dynamic.Interface
	catalog  *functions.Catalog
	deployer *functions.Deployer
	scale    jetstream.KeyValue
	cfg      ControllerConfig
	log      *slog.Logger
}

// NewController returns a Controller that deploys through deployer.
func NewController(client kubernetes.Interface, dynamicClient dynamic.Interface, js jetstream.JetStream, catalog *functions.Catalog, deployer *functions.Deployer, cfg ControllerConfig, log *slog.Logger) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	scale, err := events.EnsureScaleBucket(context.Background(), js)
	if err != nil {
		return nil, err
	}
	return &Controller{client: client, dynamic: dynamicClient, catalog: catalog, deployer: deployer, scale: scale, cfg: cfg, log: log}, nil
}

// Run reconciles until ctx ends, and returns once its goroutines have.
func (c *Controller) Run(ctx context.Context) error {
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dynamic, c.cfg.Resync, c.cfg.Workers.Namespace, nil)
	informer := factory.ForResource(FunctionResource).Informer()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	group, ctx := errgroup.WithContext(ctx)
	group.Go(func() error {
		informer.RunWithContext(ctx)
		return nil
	})
	// A status follows the catalog (revisions, rollouts, trainings) and the
	// autoscaler (replicas, depth) as they change, not only at each resync.
	namespace := c.cfg.Workers.Namespace
	group.Go(func() error {
		return c.keepWatching(ctx, "catalog", func(ctx context.Context) error {
			return c.catalog.Watch(ctx, func(name string) { queue.Add(namespace + "/" + name) })
		})
	})
	group.Go(func() error {
		return c.keepWatching(ctx, "scale status", func(ctx context.Context) error {
			return events.WatchBucket(ctx, c.scale, func(key string, _ []byte, _ uint64) {
				function, _, _ := strings.Cut(key, ".")
				queue.Add(namespace + "/" + function)
			}, func() {})
		})
	})
	group.Go(func() error {
		<-ctx.Done()
		queue.ShutDown()
		return nil
	})
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		queue.ShutDown()
		return group.Wait()
	}
	for range c.cfg.Threads {
		group.Go(func() error {
			for c.next(ctx, queue, informer.GetIndexer()) {
			}
			return nil
		})
	}
	return group.Wait()
}

// keepWatching runs watch until ctx ends, again a second after it fails:
// while NATS is away the resync still reconciles, and deletions finish.
func (c *Controller) keepWatching(ctx context.Context, what string, watch func(context.Context) error) error {
	for ctx.Err() == nil {
		if err := watch(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("controller: watch "+what, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// next reconciles one key from the queue; false once the queue is shut down.
func (c *Controller) next(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], store cache.Indexer) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	if err := c.sync(ctx, key, store); err != nil && ctx.Err() == nil {
		c.log.Warn("reconcile", "function", key, "error", err)
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	return true
}

// sync reconciles one Function resource.
func (c *Controller) sync(ctx context.Context, key string, store cache.Indexer) error {
	obj, exists, err := store.GetByKey(key)
	if err != nil || !exists {
		return err // gone: its finalizer cleaned up before it went
	}
	resource := obj.(*unstructured.Unstructured).DeepCopy()
	if resource.GetDeletionTimestamp() != nil {
		return c.finalize(ctx, resource)
	}
	if !slices.Contains(resource.GetFinalizers(), Finalizer) {
		resource.SetFinalizers(append(resource.GetFinalizers(), Finalizer))
		_, err := c.resources(resource).Update(ctx, resource, metav1.UpdateOptions{})
		return err // the update comes back through the informer
	}
	current := statusOf(resource)
	desired, err := functionOf(resource)
	if err != nil {
		return c.writeStatus(ctx, resource, Observed{Generation: resource.GetGeneration(), DeployErr: err, AppliedModel: current.Model})
	}
	model := desired.Spec.Model
	deployed, deployErr := c.deploy(ctx, desired, current.Model)
	if deployed != nil && deployErr == nil {
		deployErr = c.ensureDeployments(ctx, resource, deployed)
	}
	if deployed != nil && deployErr == nil {
		var repaired []string
		if repaired, deployErr = c.deployer.Repair(ctx, deployed); len(repaired) > 0 {
			c.log.Warn("made the queue of revisions again: it was gone", "function", deployed.Metadata.Name, "revisions", repaired)
		}
	}
	obs := Observed{Generation: resource.GetGeneration(), Deployed: deployed, DeployErr: deployErr, AppliedModel: current.Model}
	if deployErr == nil {
		obs.AppliedModel = &model
	}
	if deployed != nil {
		obs.Scale = c.readScale(ctx, deployed)
	}
	if err := c.writeStatus(ctx, resource, obs); err != nil {
		return err
	}
	return deployErr
}

// deploy puts the desired function in the catalog unless it is there as
// it is, and returns what the catalog holds. While the resource's
// spec.model is the one applied last, the catalog's model stays: a trainer
// may have published a new version since, which the resource does not name.
func (c *Controller) deploy(ctx context.Context, desired *functions.Function, applied *functions.ModelSpec) (*functions.Function, error) {
	current, err := c.catalog.Get(ctx, desired.Metadata.Name)
	if err != nil && !errors.Is(err, functions.ErrNotFound) {
		return nil, err
	}
	if current != nil && applied != nil && *applied == desired.Spec.Model {
		desired.Spec.Model = current.Spec.Model
	}
	if current != nil && reflect.DeepEqual(current.Spec, desired.Spec) && reflect.DeepEqual(current.Metadata, desired.Metadata) {
		return current, nil
	}
	deployed, err := c.deployer.Deploy(ctx, desired, nil)
	if err != nil {
		return current, err
	}
	c.log.Info("deployed", "function", desired.Metadata.Name, "revision", deployed.Status.Revision)
	return deployed, nil
}

// ensureDeployments creates the worker Deployment of every live revision
// that has none, owned by the resource; the autoscaler sets their replicas.
func (c *Controller) ensureDeployments(ctx context.Context, resource *unstructured.Unstructured, fn *functions.Function) error {
	cfg := c.cfg.Workers
	cfg.Namespace = resource.GetNamespace()
	owner := metav1.NewControllerRef(resource, FunctionResource.GroupVersion().WithKind(functions.Kind))
	var errs []error
	for _, revision := range fn.Status.Revisions {
		deployment := Deployment(fn, revision, cfg)
		deployment.OwnerReferences = []metav1.OwnerReference{*owner}
		if err := c.ensureCredentials(ctx, deployment, fn, revision.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		_, err := c.client.AppsV1().Deployments(cfg.Namespace).Create(ctx, deployment, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("create deployment %s: %w", deployment.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ensureCredentials makes the Secret with the NATS credentials of a worker
// Deployment, with the Deployment's owner, unless it exists.
func (c *Controller) ensureCredentials(ctx context.Context, deployment *appsv1.Deployment, fn *functions.Function, revision string) error {
	if c.cfg.Authority == nil {
		return nil
	}
	permissions, err := c.catalog.WorkerAccess(ctx, fn, revision)
	if err != nil {
		return err
	}
	creds, err := c.cfg.Authority.Mint("worker "+fn.Metadata.Name+" "+revision, permissions)
	if err != nil {
		return err
	}
	secret := credentialsSecret(CredentialsSecretName(deployment.Name), deployment.Namespace, deployment.Labels, creds)
	secret.OwnerReferences = deployment.OwnerReferences
	_, err = c.client.CoreV1().Secrets(deployment.Namespace).Create(ctx, secret, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create secret %s: %w", secret.Name, err)
	}
	return nil
}

// readScale reads the autoscaler's status of each live revision.
func (c *Controller) readScale(ctx context.Context, fn *functions.Function) []events.ScaleStatus {
	var statuses []events.ScaleStatus
	for _, revision := range fn.Status.Revisions {
		entry, err := c.scale.Get(ctx, events.ScaleKey(fn.Metadata.Name, revision.Name))
		if err != nil {
			continue
		}
		var status events.ScaleStatus
		if json.Unmarshal(entry.Value(), &status) == nil {
			statuses = append(statuses, status)
		}
	}
	return statuses
}

// statusOf reads the status a resource has.
func statusOf(resource *unstructured.Unstructured) ResourceStatus {
	var status ResourceStatus
	if raw, ok := resource.Object["status"]; ok {
		data, _ := json.Marshal(raw)
		_ = json.Unmarshal(data, &status)
	}
	return status
}

// writeStatus writes the resource's status when it changed.
func (c *Controller) writeStatus(ctx context.Context, resource *unstructured.Unstructured, obs Observed) error {
	current := statusOf(resource)
	obs.Previous = current.Conditions
	next := StatusOf(obs, time.Now())
	if reflect.DeepEqual(next, current) {
		return nil
	}
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	var status map[string]any
	if err := json.Unmarshal(data, &status); err != nil {
		return err
	}
	resource.Object["status"] = status
	_, err = c.resources(resource).UpdateStatus(ctx, resource, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil // a newer version is on its way through the informer
	}
	return err
}

// finalize takes a deleted Function out of NATS — its catalog entry, queue
// and prediction log — and lets the resource go; its Deployments follow
// through their owner reference. A failure is tried again until
// CleanupTimeout after the deletion, and then the resource is let go
// anyway: deletion must not hang on NATS.
func (c *Controller) finalize(ctx context.Context, resource *unstructured.Unstructured) error {
	if !slices.Contains(resource.GetFinalizers(), Finalizer) {
		return nil
	}
	cleanup, cancel := context.WithTimeout(ctx, c.cfg.CleanupTimeout)
	defer cancel()
	if err := c.deployer.Delete(cleanup, resource.GetName()); err != nil && !errors.Is(err, functions.ErrNotFound) {
		if ctx.Err() != nil || time.Since(resource.GetDeletionTimestamp().Time) < c.cfg.CleanupTimeout {
			return err // tried again, with backoff, until CleanupTimeout after the deletion
		}
		c.log.Warn("deleted function left in NATS: it did not answer in time", "function", resource.GetName(), "error", err)
	}
	resource.SetFinalizers(slices.DeleteFunc(resource.GetFinalizers(), func(f string) bool { return f == Finalizer }))
	_, err := c.resources(resource).Update(ctx, resource, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Controller) resources(resource *unstructured.Unstructured) dynamic.ResourceInterface {
	return c.dynamic.Resource(FunctionResource).Namespace(resource.GetNamespace())
}

// functionOf reads the Function of a resource, with its defaults.
func functionOf(resource *unstructured.Unstructured) (*functions.Function, error) {
	data, err := json.Marshal(resource.Object["spec"])
	if err != nil {
		return nil, err
	}
	fn := &functions.Function{Metadata: functions.Metadata{Name: resource.GetName(), Labels: resource.GetLabels()}}
	if err := json.Unmarshal(data, &fn.Spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	fn.Default()
	return fn, fn.Validate()
}
