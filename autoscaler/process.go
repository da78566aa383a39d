// Package autoscaler decides how many workers each function revision needs and
// applies that through a scaler: child processes on one machine, or the /scale
// subresource of Deployments on Kubernetes (autoscaler/kube).
package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig says how worker processes are started and stopped.
type ProcessConfig struct {
	// Command returns the command that serves one revision of a function,
	// made with exec.CommandContext(ctx, …) so it is stopped when ctx ends.
	// An error is retried as a worker that exited would be.
	Command func(ctx context.Context, function, revision string) (*exec.Cmd, error)
	// StopTimeout is how long a worker may drain after SIGTERM before it is killed.
	StopTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a crashed worker is restarted.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultProcessConfig drains for 30s and restarts crashed workers after 0.5s to 30s.
func DefaultProcessConfig() ProcessConfig {
	return ProcessConfig{StopTimeout: 30 * time.Second, MinBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second}
}

// Validate reports what is wrong with the configuration.
func (c ProcessConfig) Validate() error {
	switch {
	case c.Command == nil:
		return errors.New("process scaler: Command is required")
	case c.StopTimeout <= 0:
		return fmt.Errorf("process scaler: StopTimeout must be positive, got %s", c.StopTimeout)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("process scaler: want 0 < MinBackoff <= MaxBackoff, got %s and %s", c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

// revisionKey names one revision of one function.
type revisionKey struct{ function, revision string }

// ProcessScaler runs each revision's workers as child processes, restarts
// those that crash, and stops them with SIGTERM so they drain.
type ProcessScaler struct {
	cfg      ProcessConfig
	log      *slog.Logger
	readyDir string
	next     int            // numbers replicas, for their ready files; guarded by mu
	wg       sync.WaitGroup // every replica's supervising goroutine

	mu       sync.Mutex // guards replicas and closed
	replicas map[revisionKey][]*replica
	closed   bool
}

// ReadyFileEnv names the environment variable through which a worker process
// learns the file it creates once it is ready to take work, holding the
// address of its /metrics (Targets).
const ReadyFileEnv = "SLUICE_READY_FILE"

// replica is one supervised worker process; cancel asks it to stop for good.
// Its worker creates readyFile when ready; the scaler removes it when it exits.
type replica struct {
	cancel    context.CancelFunc
	readyFile string
}

// NewProcessScaler returns a ProcessScaler; call Close to stop every worker.
func NewProcessScaler(cfg ProcessConfig, log *slog.Logger) (*ProcessScaler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	readyDir, err := os.MkdirTemp("", "sluice-ready-")
	if err != nil {
		return nil, fmt.Errorf("process scaler: %w", err)
	}
	return &ProcessScaler{cfg: cfg, log: log, readyDir: readyDir, replicas: map[revisionKey][]*replica{}}, nil
}

// Scale sets the number of worker processes of a revision. Processes removed
// get SIGTERM and drain in the background.
func (s *ProcessScaler) Scale(_ context.Context, function, revision string, replicas int) error {
	if replicas < 0 {
		return fmt.Errorf("scale %s/%s: replicas must not be negative, got %d", function, revision, replicas)
	}
	key := revisionKey{function, revision}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("process scaler: closed")
	}
	current := s.replicas[key]
	for len(current) < replicas {
		current = append(current, s.start(key))
	}
	for len(current) > replicas {
		last := current[len(current)-1]
		last.cancel()
		current = current[:len(current)-1]
	}
	if len(current) == 0 {
		delete(s.replicas, key)
	} else {
		s.replicas[key] = current
	}
	return nil
}

// Replicas returns how many worker processes a revision is meant to have.
func (s *ProcessScaler) Replicas(function, revision string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.replicas[revisionKey{function, revision}])
}

// Ready counts the revision's workers that have said they are ready.
func (s *ProcessScaler) Ready(_ context.Context, function, revision string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ready := 0
	for _, r := range s.replicas[revisionKey{function, revision}] {
		if _, err := os.Stat(r.readyFile); err == nil {
			ready++
		}
	}
	return ready, nil
}

// Target is where a ready worker serves its /metrics.
type Target struct {
	Function, Revision, Address string
}

// Targets lists the ready workers' /metrics addresses (what each wrote in
// its ready file), in no particular order.
func (s *ProcessScaler) Targets() []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	var targets []Target
	for key, replicas := range s.replicas {
		for _, r := range replicas {
			if address, err := os.ReadFile(r.readyFile); err == nil && len(address) > 0 {
				targets = append(targets, Target{Function: key.function, Revision: key.revision, Address: string(address)})
			}
		}
	}
	return targets
}

// Close stops every worker with SIGTERM and waits until all have exited.
func (s *ProcessScaler) Close() {
	s.mu.Lock()
	s.closed = true
	for key, replicas := range s.replicas {
		for _, r := range replicas {
			r.cancel()
		}
		delete(s.replicas, key)
	}
	s.mu.Unlock()
	s.wg.Wait()
	_ = os.RemoveAll(s.readyDir)
}

// start launches a supervised replica. s.mu must be held.
func (s *ProcessScaler) start(key revisionKey) *replica {
	ctx, cancel := context.WithCancel(context.Background())
	s.next++
	r := &replica{cancel: cancel, readyFile: filepath.Join(s.readyDir, fmt.Sprintf("%s.%s.%d", key.function, key.revision, s.next))}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.supervise(ctx, key, r.readyFile)
	}()
	return r
}

// supervise runs the replica's process until ctx ends, restarting it with
// exponential backoff when it exits on its own.
func (s *ProcessScaler) supervise(ctx context.Context, key revisionKey, readyFile string) {
	log := s.log.With("function", key.function, "revision", key.revision)
	backoff := s.cfg.MinBackoff
	for ctx.Err() == nil {
		started := time.Now()
		err := s.runOnce(ctx, key, readyFile)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > s.cfg.MaxBackoff {
			backoff = s.cfg.MinBackoff // it ran long enough: a fresh crash, not a crash loop
		}
		log.Warn("worker exited; restarting", "error", err, "after", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

func (s *ProcessScaler) runOnce(ctx context.Context, key revisionKey, readyFile string) error {
	_ = os.Remove(readyFile)
	defer os.Remove(readyFile)
	cmd, err := s.cfg.Command(ctx, key.function, key.revision)
	if err != nil {
		return fmt.Errorf("worker command: %w", err)
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, ReadyFileEnv+"="+readyFile)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = s.cfg.StopTimeout
	// A worker has its own process group, so a Ctrl-C at the terminal reaches
	// only the supervisor, which stops workers after the activator drained;
	// and it outlives no supervisor: if this process dies, the kernel sends
	// SIGTERM (Pdeathsig follows the starting thread, hence the lock).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	return cmd.Wait()
}
