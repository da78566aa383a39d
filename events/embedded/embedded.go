// Package embedded runs the nats-server that Sluice embeds when it runs on
// one machine (`sluice up`) and in tests (events/natstest): JetStream with
// file storage, in this process.
package embedded

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures the embedded nats-server.
type Config struct {
	// Host and Port to listen on; Port -1 picks a free port.
	Host string
	Port int
	// StoreDir holds JetStream's file storage.
	StoreDir string
	// MaxPayload bounds one message; inference requests carry whole tensors.
	MaxPayload int32
	// Logs turns the server's own logging on.
	Logs bool
}

// DefaultConfig listens on loopback at NATS's usual port.
func DefaultConfig() Config {
	return Config{Host: "127.0.0.1", Port: 4222, MaxPayload: 8 << 20}
}

// Validate reports what is wrong with the configuration.
func (c Config) Validate() error {
	if c.StoreDir == "" {
		return errors.New("nats server: StoreDir is required for JetStream's file storage")
	}
	if c.MaxPayload <= 0 {
		return fmt.Errorf("nats server: MaxPayload must be positive, got %d", c.MaxPayload)
	}
	return nil
}

// Start starts an embedded nats-server with JetStream on disk and waits
// until it accepts connections. The caller owns it and calls Shutdown and
// WaitForShutdown.
func Start(cfg Config) (*server.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "sluice",
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
		NoLog:      !cfg.Logs,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if cfg.Logs {
		srv.ConfigureLogger()
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats server: not ready for connections on %s:%d after 10s", cfg.Host, cfg.Port)
	}
	return srv, nil
}
