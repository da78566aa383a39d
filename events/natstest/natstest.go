// Package natstest starts a real embedded nats-server with JetStream for tests.
package natstest

import (
	"os/exec"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events/embedded"
)

// Run starts a nats-server on a free loopback port with JetStream storage in a
// temporary directory, and shuts it down when the test ends.
func Run(t testing.TB) *server.Server {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.Port = -1
	cfg.StoreDir = t.TempDir()
	srv, err := embedded.Start(cfg)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.Server
}

// Connect opens a client connection to srv, closed when the test ends.
func Connect(t testing.TB, srv *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream starts a server and returns a connection and its JetStream context.
func JetStream(t testing.TB) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv := Run(t)
	nc := Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return srv, nc, js
}

// SmallDisk mounts a tmpfs of size (e.g. "64m") for the test: a disk that
// fills up. Mounting needs root, as the tests that fill disks run.
func SmallDisk(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("natstest: mount a %s tmpfs to fill up (the tests that fill a disk run as root, as make test does): %v: %s", size, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}
