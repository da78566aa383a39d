package functions

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"sluice.dev/sluice/events"
)

// Validate reports every field that is wrong, each named by its path, such as
// "spec.scaling.maxReplicas: must be at least minReplicas (2), got 1".
func (f *Function) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if f.APIVersion != APIVersion {
		bad("apiVersion", "must be %q, got %q", APIVersion, f.APIVersion)
	}
	if f.Kind != Kind {
		bad("kind", "must be %q, got %q", Kind, f.Kind)
	}
	if err := events.ValidateName(f.Metadata.Name); err != nil {
		bad("metadata.name", "%v", err)
	}
	s := f.Spec
	switch {
	case s.Model.Path == "" && s.Model.URI == "":
		bad("spec.model", "set path (a local ONNX file) or uri (an object in the model store)")
	case s.Model.Path != "" && s.Model.URI != "":
		bad("spec.model", "set path or uri, not both")
	case s.Model.Path != "" && !strings.HasSuffix(s.Model.Path, ".onnx"):
		bad("spec.model.path", "must name an .onnx file, got %q", s.Model.Path)
	}
	if s.Runtime.Device != DeviceCPU && s.Runtime.Device != DeviceGPU {
		bad("spec.runtime.device", "must be %q or %q, got %q", DeviceCPU, DeviceGPU, s.Runtime.Device)
	}
	if s.Runtime.Threads < 1 || s.Runtime.Threads > 64 {
		bad("spec.runtime.threads", "must be between 1 and 64, got %d", s.Runtime.Threads)
	}
	sc := s.Scaling
	if sc.MinReplicas < 0 {
		bad("spec.scaling.minReplicas", "must not be negative, got %d", sc.MinReplicas)
	}
	if sc.MaxReplicas < 1 || sc.MaxReplicas < sc.MinReplicas {
		bad("spec.scaling.maxReplicas", "must be at least 1 and at least minReplicas (%d), got %d", sc.MinReplicas, sc.MaxReplicas)
	}
	if sc.TargetQueueDepth < 1 {
		bad("spec.scaling.targetQueueDepth", "must be at least 1, got %d", sc.TargetQueueDepth)
	}
	if sc.ActivationQueueDepth < 1 {
		bad("spec.scaling.activationQueueDepth", "must be at least 1, got %d", sc.ActivationQueueDepth)
	}
	positive(bad, "spec.scaling.scaleToZeroAfter", sc.ScaleToZeroAfter.Duration, time.Second, 24*time.Hour)
	if b := s.Batching.MaxBatchSize; b < 1 || b > 4096 {
		bad("spec.batching.maxBatchSize", "must be between 1 and 4096, got %d", b)
	}
	positive(bad, "spec.batching.maxDelay", s.Batching.MaxDelay.Duration, time.Microsecond, time.Second)
	positive(bad, "spec.timeouts.request", s.Timeouts.Request.Duration, time.Millisecond, time.Hour)
	if uri := s.Delivery.SinkURI; uri != "" {
		if err := ValidateSinkURI(uri); err != nil {
			bad("spec.delivery.sinkURI", "%v", err)
		}
	}
	if sum := s.Model.SHA256; sum != "" && !sha256Pattern.MatchString(sum) {
		bad("spec.model.sha256", "want 64 lower-case hex digits, got %q", sum)
	}
	if isURL(s.Model.URI) && s.Model.SHA256 == "" {
		bad("spec.model.sha256", "an http(s) uri needs the sha256 of what it serves")
	}
	if s.Rollout != nil {
		s.Rollout.validate(bad)
	}
	s.Traffic.validate(bad)
	if s.Retrain != nil {
		s.Retrain.validate(bad)
	}
	return errors.Join(errs...)
}

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// isURL says whether a model uri is an http(s) URL rather than an object of
// the model store.
func isURL(uri string) bool {
	return strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://")
}

func positive(bad func(string, string, ...any), field string, d, low, high time.Duration) {
	if d < low || d > high {
		bad(field, "must be between %s and %s, got %s", low, high, d)
	}
}

// ValidateSinkURI checks that uri is an absolute http or https URL.
func ValidateSinkURI(uri string) error {
	parsed, err := url.Parse(uri)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return fmt.Errorf("want an absolute http or https URL, got %q", uri)
	}
	return nil
}
