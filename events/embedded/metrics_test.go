package embedded_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/embedded"
)

// The NATS server's metrics read its own state: a connected client, JetStream on.
func TestMetrics(t *testing.T) {
	cfg := embedded.DefaultConfig()
	cfg.Port, cfg.StoreDir = -1, t.TempDir()
	srv, err := embedded.Start(cfg)
	require.NoError(t, err)
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.Publish("x", []byte("hello")))
	require.NoError(t, nc.Flush())

	metrics := embedded.Metrics(srv.Server)
	require.NoError(t, testutil.CollectAndCompare(metrics, strings.NewReader(`
# HELP sluice_nats_connections Clients connected to this NATS server.
# TYPE sluice_nats_connections gauge
sluice_nats_connections 1
# HELP sluice_nats_jetstream_current 1 when this server is current with JetStream's meta leader (always 1 on one server).
# TYPE sluice_nats_jetstream_current gauge
sluice_nats_jetstream_current 1
# HELP sluice_nats_routes Routes to the cluster's other NATS servers.
# TYPE sluice_nats_routes gauge
sluice_nats_routes 0
`), "sluice_nats_connections", "sluice_nats_jetstream_current", "sluice_nats_routes"))
	registry := prometheus.NewPedanticRegistry()
	require.NoError(t, registry.Register(metrics))
	families, err := registry.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, family := range families {
		metric := family.GetMetric()[0]
		values[family.GetName()] = metric.GetCounter().GetValue() + metric.GetGauge().GetValue()
	}
	require.Positive(t, values["sluice_nats_in_messages_total"])
	require.Positive(t, values["sluice_nats_jetstream_store_max_bytes"])
}
