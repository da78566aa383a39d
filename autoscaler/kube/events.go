package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/events"
	functionskube "sluice.dev/sluice/functions/kube"
)

// eventReasons names the Kubernetes Event of each scale direction.
var eventReasons = map[string]string{
	"from_zero": "ScaledFromZero", "up": "ScaledUp", "down": "ScaledDown", "to_zero": "ScaledToZero",
}

// RecordScaleEvents turns every scale decision the autoscaler announces
// (events.ScaleEventSubject) into a Kubernetes Event on the revision's worker
// Deployment, with the decision's reason as its message, until ctx ends.
func RecordScaleEvents(ctx context.Context, nc *nats.Conn, client kubernetes.Interface, namespace string) error {
	decisions := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(events.ScaleEventSubject("*"), decisions)
	if err != nil {
		return fmt.Errorf("scale events: subscribe: %w", err)
	}
	defer sub.Unsubscribe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-decisions:
			if event, ok := kubeEvent(msg, namespace); ok {
				_, _ = client.CoreV1().Events(namespace).Create(ctx, event, metav1.CreateOptions{})
			}
		}
	}
}

// kubeEvent is the Kubernetes Event of one announced scale decision.
func kubeEvent(msg *nats.Msg, namespace string) (*corev1.Event, bool) {
	ev, err := events.ReadEvent(context.Background(), msg.Header, msg.Data)
	if err != nil {
		return nil, false
	}
	var status events.ScaleStatus
	if err := json.Unmarshal(ev.Data(), &status); err != nil {
		return nil, false
	}
	direction := strings.TrimPrefix(ev.Type(), events.TypeScalePrefix)
	reason, ok := eventReasons[direction]
	if !ok {
		return nil, false
	}
	name := functionskube.DeploymentName(status.Function, status.Revision)
	now := metav1.NewTime(status.At)
	if status.At.IsZero() {
		now = metav1.NewTime(time.Now())
	}
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: name + ".", Namespace: namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name, Namespace: namespace},
		Reason:         reason,
		Message:        fmt.Sprintf("scaled to %d replicas: %s (queue depth %d)", status.Desired, status.Reason, status.Depth),
		Type:           corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "sluice-autoscaler"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, true
}
