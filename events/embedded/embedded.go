// Package embedded runs the nats-server that Sluice embeds when it runs on
// one machine (`sluice up`) and in tests (events/natstest): JetStream with
// file storage, in this process.
package embedded

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"sluice.dev/sluice/events/access"
)

// Config configures the embedded nats-server.
type Config struct {
	// Host and Port to listen on; Port -1 picks a free port.
	Host string
	Port int
	// StoreDir holds JetStream's file storage.
	StoreDir string
	// MaxStore bounds JetStream's file storage; 0 leaves it to nats-server:
	// three quarters of the disk's free space at start.
	MaxStore int64
	// MaxPayload bounds one message; inference requests carry whole tensors.
	MaxPayload int32
	// Logs turns the server's own logging on.
	Logs bool
	// SyncAlways makes JetStream write every message to disk before it
	// acknowledges it (sync_interval: always); otherwise it syncs every 2
	// minutes and a power loss may lose what it acknowledged since.
	SyncAlways bool
	// Trust, when set, runs the server in operator mode: only users minted
	// by that Authority connect, each allowed what it was minted for.
	Trust *access.Trust
	// Log, when set, gets the server's errors and warnings, among them
	// every refused publish or subscription, with the user's name.
	Log *slog.Logger
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

// Server is a running embedded nats-server, and the watch on its storage.
type Server struct {
	*server.Server
	Storage *Storage
}

// Start starts an embedded nats-server with JetStream on disk and waits
// until it accepts connections. The caller owns it and calls Shutdown and
// WaitForShutdown.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// nats-server would only say, after 10 s, that it is not ready: say
	// at once that the address is taken, and by what it likely is.
	if cfg.Port > 0 {
		address := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
		listener, err := net.Listen("tcp", address)
		if err != nil {
			return nil, fmt.Errorf("nats server: %w (another sluice up or nats-server? --nats-port picks another port, -1 any free one)", err)
		}
		listener.Close()
	}
	opts := &server.Options{
		ServerName:        "sluice",
		Host:              cfg.Host,
		Port:              cfg.Port,
		JetStream:         true,
		StoreDir:          cfg.StoreDir,
		JetStreamMaxStore: cfg.MaxStore,
		MaxPayload:        cfg.MaxPayload,
		NoSigs:            true,
		SyncAlways:        cfg.SyncAlways,
	}
	if t := cfg.Trust; t != nil {
		resolver := &server.MemAccResolver{}
		for pub, token := range t.Accounts {
			_ = resolver.Store(pub, token) // a map: never fails
		}
		opts.TrustedOperators = []*jwt.OperatorClaims{t.Operator}
		opts.AccountResolver = resolver
		opts.SystemAccount = t.SystemAccount
		opts.MaxControlLine = access.MaxControlLine
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	var logs server.Logger = serverLog{cmp.Or(cfg.Log, slog.New(slog.DiscardHandler))}
	if cfg.Logs {
		srv.ConfigureLogger()
		logs = srv.Logger()
	}
	srv.SetLoggerV2(logs, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats server: not ready for connections on %s:%d after 10s", cfg.Host, cfg.Port)
	}
	return &Server{Server: srv, Storage: WatchStorage(srv, logs, cmp.Or(cfg.Log, slog.Default()))}, nil
}

// serverLog passes the server's warnings and errors to a structured logger.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Noticef(string, ...any) {}
func (l serverLog) Debugf(string, ...any)  {}
func (l serverLog) Tracef(string, ...any)  {}
func (l serverLog) Warnf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), "component", "nats")
}
func (l serverLog) Errorf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (l serverLog) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...), "component", "nats")
}
