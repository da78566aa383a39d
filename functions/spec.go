// Package functions owns the Function resource — its spec, defaults and
// validation, the same YAML for `kubectl apply` and `sluice deploy` — its
// catalog in a NATS KV bucket, and its model versions in a NATS object store.
package functions

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/train"
)

// APIVersion and Kind identify the Function resource.
const (
	APIVersion = "sluice.dev/v1alpha1"
	Kind       = "Function"
)

// Function is a model served by Sluice: what to run, how to scale it and how to batch it.
type Function struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
	Status     Status   `json:"status,omitempty"`
}

// Metadata is the part of Kubernetes object metadata a Function uses.
type Metadata struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Spec is what the user asks for.
type Spec struct {
	Model    ModelSpec    `json:"model"`
	Runtime  RuntimeSpec  `json:"runtime,omitempty"`
	Scaling  ScalingSpec  `json:"scaling,omitempty"`
	Batching BatchingSpec `json:"batching,omitempty"`
	Timeouts TimeoutSpec  `json:"timeouts,omitempty"`
	Delivery DeliverySpec `json:"delivery,omitzero"`
	// Rollout, when set, moves traffic to a new revision step by step.
	Rollout *RolloutSpec `json:"rollout,omitempty"`
	// Retrain, when set, says what the function is trained on and when.
	Retrain *RetrainSpec `json:"retrain,omitempty"`
	// Traffic, when set, pins how requests split between live revisions
	// (weights summing to 100): a new revision then takes none until it is
	// named here, and no rollout starts.
	Traffic Traffic `json:"traffic,omitempty"`
}

// DeliverySpec says where the results of asynchronous requests are sent.
type DeliverySpec struct {
	// SinkURI receives each result as a CloudEvent by HTTP POST, with retries;
	// a request's Sluice-Sink-URI header overrides it.
	SinkURI string `json:"sinkURI,omitempty"`
}

// ModelSpec says where the ONNX model comes from: a local file that deploy
// uploads, or an object already in the model store.
type ModelSpec struct {
	Path string `json:"path,omitempty"`
	URI  string `json:"uri,omitempty"`
	// SHA256, when set, is what the model's sha256 must be.
	SHA256 string `json:"sha256,omitempty"`
}

// Devices a worker can run on.
const (
	DeviceCPU = "cpu"
	DeviceGPU = "gpu"
)

// RuntimeSpec says where the model runs.
type RuntimeSpec struct {
	Device string `json:"device,omitempty"`
	// Threads is ONNX Runtime's intra-op thread count per session; small models run best with 1.
	Threads int `json:"threads,omitempty"`
}

// ScalingSpec bounds the replicas and sets the queue depths that drive them.
type ScalingSpec struct {
	MinReplicas          int      `json:"minReplicas"`
	MaxReplicas          int      `json:"maxReplicas,omitempty"`
	TargetQueueDepth     int      `json:"targetQueueDepth,omitempty"`
	ActivationQueueDepth int      `json:"activationQueueDepth,omitempty"`
	ScaleToZeroAfter     Duration `json:"scaleToZeroAfter,omitempty"`
}

// BatchingSpec sets the worker's dynamic batching.
type BatchingSpec struct {
	MaxBatchSize int      `json:"maxBatchSize,omitempty"`
	MaxDelay     Duration `json:"maxDelay,omitempty"`
}

// TimeoutSpec bounds how long a caller waits.
type TimeoutSpec struct {
	Request Duration `json:"request,omitempty"`
}

// Status is what the platform records about a deployed Function.
type Status struct {
	// Revision is the current revision; it changes whenever the model or runtime changes.
	Revision string `json:"revision,omitempty"`
	// Model is the model version the revision serves.
	Model *ModelVersion `json:"model,omitempty"`
	// Generation counts the deploys of this Function.
	Generation int64     `json:"generation,omitempty"`
	UpdatedAt  time.Time `json:"updatedAt,omitzero"`
	// Traffic, when a rollout sets it, splits requests between revisions;
	// without it the current revision (or the one Serving falls back to)
	// takes them all. See TrafficTable.
	Traffic Traffic `json:"traffic,omitempty"`
	// Revisions are the live revisions, oldest first; the last is Revision.
	// An older one keeps its model so its workers can drain its queue.
	Revisions []RevisionStatus `json:"revisions,omitempty"`
	// Rollout is the latest rollout, while it runs and after.
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// Retrain is what the retrain loop keeps between decisions.
	Retrain *RetrainStatus `json:"retrain,omitempty"`
}

// RevisionStatus is what one revision serves: a model version on a runtime,
// and whether that model loads.
type RevisionStatus struct {
	Name      string        `json:"name"`
	Model     ModelVersion  `json:"model"`
	Runtime   RuntimeSpec   `json:"runtime"`
	CreatedAt time.Time     `json:"createdAt"`
	State     RevisionState `json:"state,omitempty"`
	// Reason is ONNX Runtime's error when State is Failed.
	Reason string `json:"reason,omitempty"`
}

// FindRevision returns the named live revision.
func (s Status) FindRevision(name string) (RevisionStatus, bool) {
	for _, r := range s.Revisions {
		if r.Name == name {
			return r, true
		}
	}
	return RevisionStatus{}, false
}

// ModelVersion is one ONNX file in the model store.
type ModelVersion struct {
	// Object is the name of the file in the model store.
	Object    string        `json:"object"`
	SHA256    string        `json:"sha256"`
	Size      int64         `json:"size"`
	Signature oip.Signature `json:"signature"`
	// Training says how a trainer made it, when one did.
	Training *Training `json:"training,omitempty"`
}

// Training is what a trainer records with the model version it publishes:
// where it came from, what it was trained on, how well it did, and the
// distribution of its inputs, which drift is measured against.
type Training struct {
	// Run names the training run; Parent the revision that served when it started.
	Run    string `json:"run,omitempty"`
	Parent string `json:"parent,omitempty"`
	// Rows counts the training data: base rows and feedback rows, which
	// arrived from FeedbackFrom to FeedbackTo.
	Rows         int       `json:"rows"`
	FeedbackRows int       `json:"feedbackRows"`
	FeedbackFrom time.Time `json:"feedbackFrom,omitzero"`
	FeedbackTo   time.Time `json:"feedbackTo,omitzero"`
	// HeldOutRows were kept out of training to measure TestAccuracy, and
	// ServingAccuracy, the parent's on the same rows (-1 when not measured).
	HeldOutRows     int             `json:"heldOutRows"`
	TestAccuracy    float64         `json:"testAccuracy"`
	ServingAccuracy float64         `json:"servingAccuracy"`
	Baseline        *train.Baseline `json:"baseline,omitempty"`
	TrainedAt       time.Time       `json:"trainedAt"`
}

// Duration is a time.Duration written as "30s" in YAML and JSON.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "2ms" or "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("want a duration string such as \"30s\", got %s", b)
	}
	parsed, err := time.ParseDuration(text)
	if err != nil {
		return fmt.Errorf("want a duration such as \"30s\", got %q", text)
	}
	d.Duration = parsed
	return nil
}

// IsZero lets omitzero/omitempty leave an unset duration out.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// Parse reads one Function from YAML or JSON, rejecting unknown fields, and
// applies defaults. It does not validate: call Validate.
func Parse(data []byte) (*Function, error) {
	var fn Function
	if err := yaml.UnmarshalStrict(data, &fn); err != nil {
		if field := unknownField(data); field != "" {
			return nil, fmt.Errorf("function: %s", field)
		}
		return nil, fmt.Errorf("function: %s", strings.TrimPrefix(err.Error(), "error unmarshaling JSON: while decoding JSON: "))
	}
	fn.Default()
	return &fn, nil
}

// Default fills every unset field with its default.
func (f *Function) Default() {
	if f.APIVersion == "" {
		f.APIVersion = APIVersion
	}
	if f.Kind == "" {
		f.Kind = Kind
	}
	s := &f.Spec
	if s.Runtime.Device == "" {
		s.Runtime.Device = DeviceCPU
	}
	if s.Runtime.Threads == 0 {
		s.Runtime.Threads = 1
	}
	if s.Scaling.MaxReplicas == 0 {
		s.Scaling.MaxReplicas = max(4, s.Scaling.MinReplicas)
	}
	if s.Scaling.TargetQueueDepth == 0 {
		s.Scaling.TargetQueueDepth = 16
	}
	if s.Scaling.ActivationQueueDepth == 0 {
		s.Scaling.ActivationQueueDepth = 1
	}
	if s.Scaling.ScaleToZeroAfter.Duration == 0 {
		s.Scaling.ScaleToZeroAfter.Duration = 30 * time.Second
	}
	if s.Batching.MaxBatchSize == 0 {
		s.Batching.MaxBatchSize = 32
	}
	if s.Batching.MaxDelay.Duration == 0 {
		s.Batching.MaxDelay.Duration = 2 * time.Millisecond
	}
	if s.Timeouts.Request.Duration == 0 {
		s.Timeouts.Request.Duration = 30 * time.Second
	}
	if s.Rollout != nil {
		s.Rollout.Default()
	}
	if s.Retrain != nil {
		s.Retrain.Default()
	}
}
