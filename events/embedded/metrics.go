package embedded

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is what an operator watches of a nats-server, read from its own
// monitoring state at each scrape: clients, routes to the cluster's other
// servers, traffic, slow consumers, and JetStream's storage against what it
// may use (a full disk stops every queue).
func Metrics(srv *server.Server) prometheus.Collector { return metrics{srv: srv} }

type metrics struct{ srv *server.Server }

var (
	natsConnections = prometheus.NewDesc("sluice_nats_connections", "Clients connected to this NATS server.", nil, nil)
	natsRoutes      = prometheus.NewDesc("sluice_nats_routes", "Routes to the cluster's other NATS servers.", nil, nil)
	natsInMsgs      = prometheus.NewDesc("sluice_nats_in_messages_total", "Messages this NATS server received.", nil, nil)
	natsOutMsgs     = prometheus.NewDesc("sluice_nats_out_messages_total", "Messages this NATS server sent.", nil, nil)
	natsInBytes     = prometheus.NewDesc("sluice_nats_in_bytes_total", "Bytes this NATS server received.", nil, nil)
	natsOutBytes    = prometheus.NewDesc("sluice_nats_out_bytes_total", "Bytes this NATS server sent.", nil, nil)
	natsSlow        = prometheus.NewDesc("sluice_nats_slow_consumers_total", "Clients disconnected for reading too slowly.", nil, nil)
	jsStoreBytes    = prometheus.NewDesc("sluice_nats_jetstream_store_bytes", "File storage JetStream uses on this server.", nil, nil)
	jsReservedBytes = prometheus.NewDesc("sluice_nats_jetstream_store_reserved_bytes", "File storage reserved by streams' limits on this server.", nil, nil)
	jsMaxStoreBytes = prometheus.NewDesc("sluice_nats_jetstream_store_max_bytes", "File storage JetStream may use on this server.", nil, nil)
	jsAPIErrors     = prometheus.NewDesc("sluice_nats_jetstream_api_errors_total", "JetStream API requests that failed.", nil, nil)
	jsCurrent       = prometheus.NewDesc("sluice_nats_jetstream_current", "1 when this server is current with JetStream's meta leader (always 1 on one server).", nil, nil)
)

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{natsConnections, natsRoutes, natsInMsgs, natsOutMsgs, natsInBytes, natsOutBytes, natsSlow,
		jsStoreBytes, jsReservedBytes, jsMaxStoreBytes, jsAPIErrors, jsCurrent} {
		ch <- d
	}
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	varz, err := m.srv.Varz(nil)
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(natsConnections, float64(varz.Connections))
	gauge(natsRoutes, float64(varz.Routes))
	counter(natsInMsgs, float64(varz.InMsgs))
	counter(natsOutMsgs, float64(varz.OutMsgs))
	counter(natsInBytes, float64(varz.InBytes))
	counter(natsOutBytes, float64(varz.OutBytes))
	counter(natsSlow, float64(varz.SlowConsumers))
	if js := varz.JetStream; js.Stats != nil && js.Config != nil {
		gauge(jsStoreBytes, float64(js.Stats.Store))
		gauge(jsReservedBytes, float64(js.Stats.ReservedStore))
		gauge(jsMaxStoreBytes, float64(js.Config.MaxStore))
		counter(jsAPIErrors, float64(js.Stats.API.Errors))
		current := 0.0
		if m.srv.JetStreamIsCurrent() {
			current = 1
		}
		gauge(jsCurrent, current)
	}
}
