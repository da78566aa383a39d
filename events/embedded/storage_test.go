package embedded_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/events/embedded"
	"sluice.dev/sluice/events/natstest"
)

// fill writes to dir until its disk is full, and returns the file to remove.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)
	block := make([]byte, 1<<20)
	for {
		if _, err := f.Write(block); err != nil {
			break
		}
	}
	require.NoError(t, f.Close())
	return path
}

// A full disk stops the stream that could not write, and the server says
// so; once there is room again JetStream comes back by itself, with what
// it had stored, and takes messages again without a restart.
// It does in operator mode too, as sluice up runs it.
func TestStorageRecoversWhenTheDiskHasRoomAgain(t *testing.T) {
	disk := natstest.SmallDisk(t, "64m")
	authority, err := access.NewAuthority()
	require.NoError(t, err)
	trust, err := authority.Trust(-1)
	require.NoError(t, err)
	cfg := embedded.DefaultConfig()
	cfg.Port, cfg.StoreDir, cfg.Trust = -1, filepath.Join(disk, "store"), &trust
	srv, err := embedded.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.NoError(t, srv.Storage.Health())

	creds, err := authority.Mint("admin", access.Control())
	require.NoError(t, err)
	options, err := access.Connect(creds)
	require.NoError(t, err)
	nc, err := nats.Connect(srv.ClientURL(), options...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := t.Context()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}, MaxBytes: 8 << 20})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "s", []byte("before"))
	require.NoError(t, err)

	filler := fill(t, disk)
	require.ErrorContains(t, srv.Storage.Health(), "nearly full")
	publish, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = js.Publish(publish, "s", make([]byte, 64<<10))
	cancel()
	require.Error(t, err, "a full disk stores nothing")
	require.ErrorContains(t, srv.Storage.Health(), "no space left on device")
	require.ErrorContains(t, srv.Storage.Health(), "cannot write to the disk of", "an operator is told where to make room")

	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool {
		publish, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(publish, "s", []byte("after"))
		return err == nil
	}, 15*time.Second, 200*time.Millisecond, "JetStream writes again once the disk has room")
	require.NoError(t, srv.Storage.Health())
	stream, err := js.Stream(ctx, "S")
	require.NoError(t, err)
	first, err := stream.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "before", string(first.Data), "what was stored before the disk filled is kept")
}
