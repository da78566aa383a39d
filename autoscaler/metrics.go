package autoscaler

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	depth, desired, ready *prometheus.GaugeVec
	scaleEvents           *prometheus.CounterVec
	pokeToScale           prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	factory := promauto.With(reg)
	labels := []string{"function", "revision"}
	return &metrics{
		depth: factory.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_queue_depth", Help: "Requests waiting or held by workers (NumPending + NumAckPending).",
		}, labels),
		desired: factory.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_desired_replicas", Help: "Replicas the autoscaler decided on.",
		}, labels),
		ready: factory.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_ready_replicas", Help: "Replicas ready to take work.",
		}, labels),
		scaleEvents: factory.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_scale_events_total", Help: "Scale decisions applied, by direction (up, down, to_zero, from_zero).",
		}, append(labels, "direction")),
		pokeToScale: factory.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_autoscaler_poke_to_scale_seconds", Help: "From a poke of a function at zero to its scale call.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
	}
}

func (m *metrics) observe(key revisionKey, depth int64, desired, ready int) {
	m.depth.WithLabelValues(key.function, key.revision).Set(float64(depth))
	m.desired.WithLabelValues(key.function, key.revision).Set(float64(desired))
	m.ready.WithLabelValues(key.function, key.revision).Set(float64(ready))
}

func (m *metrics) scaled(key revisionKey, direction string) {
	m.scaleEvents.WithLabelValues(key.function, key.revision, direction).Inc()
}

// scaleDirection names a change of replicas: up, down, from_zero or to_zero.
func scaleDirection(from, to int) string {
	switch {
	case from == 0:
		return "from_zero"
	case to == 0:
		return "to_zero"
	case to < from:
		return "down"
	}
	return "up"
}

// forget drops the series of a revision that is gone.
func (m *metrics) forget(key revisionKey) {
	for _, gauge := range []*prometheus.GaugeVec{m.depth, m.desired, m.ready} {
		gauge.DeleteLabelValues(key.function, key.revision)
	}
}
