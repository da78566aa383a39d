package activator

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lateReplies prometheus.Counter
	// refusedConns counts connections closed as they came: their client had MaxConnsPerClient open.
	refusedConns prometheus.Counter
	coldStart    *prometheus.HistogramVec
	// canaryRetries counts requests a rollout's candidate failed that were sent to the stable revision.
	canaryRetries *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	factory := promauto.With(reg)
	return &metrics{
		requests: factory.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_activator_requests_total", Help: "Prediction requests answered, by function and HTTP status code.",
		}, []string{"function", "code"}),
		duration: factory.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_activator_request_duration_seconds", Help: "Time from request arrival to the answer, by function.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 20),
		}, []string{"function"}),
		lateReplies: factory.NewCounter(prometheus.CounterOpts{
			Name: "sluice_activator_late_replies_total", Help: "Worker replies that arrived after their caller stopped waiting, dropped.",
		}),
		refusedConns: factory.NewCounter(prometheus.CounterOpts{
			Name: "sluice_activator_refused_connections_total", Help: "Connections closed as they came because their client address had as many open as it may.",
		}),
		coldStart: factory.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_activator_cold_start_seconds", Help: "From a request's arrival at a function with no ready replica to its answer.",
			Buckets: prometheus.ExponentialBuckets(10e-3, 2, 14),
		}, []string{"function"}),
		canaryRetries: factory.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_activator_canary_retries_total", Help: "Requests a rollout's candidate failed for a server-side reason, sent again to the stable revision.",
		}, []string{"function"}),
	}
}

func (m *metrics) observe(function string, code int, start time.Time) {
	m.requests.WithLabelValues(function, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(function).Observe(time.Since(start).Seconds())
}
