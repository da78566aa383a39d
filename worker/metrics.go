package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics of one worker; every series carries the function and revision.
type metrics struct {
	requests  *prometheus.CounterVec
	dead      prometheus.Counter
	batchSize prometheus.Observer
	inference prometheus.Observer
	queueWait prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, function, revision string) *metrics {
	labels := prometheus.Labels{"function": function, "revision": revision}
	factory := promauto.With(reg)
	return &metrics{
		requests: factory.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_worker_requests_total", Help: "Requests settled by the worker, by outcome: ok, error, expired, or recorded (answered by an earlier delivery, announced again).",
			ConstLabels: labels,
		}, []string{"outcome"}),
		dead: factory.NewCounter(prometheus.CounterOpts{
			Name: "sluice_worker_dead_letters_total", Help: "Requests given up and kept in the dead-letter stream.",
			ConstLabels: labels,
		}),
		batchSize: factory.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_worker_batch_size", Help: "Requests scored per batch.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		inference: factory.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_worker_batch_seconds", Help: "Time to decode, score and split one batch.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(20e-6, 2, 18),
		}),
		queueWait: factory.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_worker_queue_wait_seconds", Help: "Time a request waited in the queue before the worker took it.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(50e-6, 2, 22),
		}),
	}
}
