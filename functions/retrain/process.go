package retrain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig says how ProcessLauncher runs the trainer.
type ProcessConfig struct {
	// Program is the binary every run executes, the run's Args after it:
	// under `sluice up`, the sluice binary itself.
	Program string
	// Dir is the runs' working directory; empty means this process's.
	Dir string
	// Output receives the runs' stdout and stderr, each line prefixed by
	// the run's name; nil means os.Stderr.
	Output io.Writer
	// StopTimeout is how long a trainer may take to exit after SIGTERM, at
	// its deadline or on Close, before its process group is killed.
	StopTimeout time.Duration
}

// DefaultProcessConfig runs this very binary, writes the runs' output to
// stderr and gives a trainer 10s to exit after SIGTERM.
func DefaultProcessConfig() ProcessConfig {
	program, _ := os.Executable() // empty on error: Validate says so
	return ProcessConfig{Program: program, Output: os.Stderr, StopTimeout: 10 * time.Second}
}

// Validate reports what is wrong with the configuration.
func (c ProcessConfig) Validate() error {
	switch {
	case c.Program == "":
		return errors.New("process launcher: Program is required")
	case c.StopTimeout <= 0:
		return fmt.Errorf("process launcher: StopTimeout must be positive, got %s", c.StopTimeout)
	}
	return nil
}

// ProcessLauncher runs each training run as a child process in a process
// group of its own, and keeps every run's status until it is closed. Close
// stops the running trainers and waits for them.
type ProcessLauncher struct {
	cfg ProcessConfig
	log *slog.Logger
	wg  sync.WaitGroup // one goroutine per started run, waiting for its process

	outputMu sync.Mutex // serialises the runs' writes to cfg.Output

	mu     sync.Mutex // guards runs, every processRun's status, and closed
	runs   map[string]*processRun
	closed bool
}

var _ Launcher = (*ProcessLauncher)(nil)

// processRun is one started run: stop ends its process early; status is
// guarded by ProcessLauncher.mu.
type processRun struct {
	stop   context.CancelFunc
	status RunStatus
}

// NewProcessLauncher returns a ProcessLauncher; call Close to stop every run.
func NewProcessLauncher(cfg ProcessConfig, log *slog.Logger) (*ProcessLauncher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	return &ProcessLauncher{cfg: cfg, log: log, runs: map[string]*processRun{}}, nil
}

// Launch starts run's process and returns; the run outlives ctx, which only
// bounds the call. A name launched before starts nothing, even once its run
// has finished.
func (l *ProcessLauncher) Launch(_ context.Context, run Run) error {
	if run.Name == "" {
		return errors.New("launch: the run has no Name")
	}
	if run.Deadline <= 0 {
		return fmt.Errorf("launch %s: Deadline must be positive, got %s", run.Name, run.Deadline)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("launch %s: process launcher closed", run.Name)
	}
	if _, ok := l.runs[run.Name]; ok {
		return nil
	}
	creds, err := credentialsFile(run)
	if err != nil {
		return fmt.Errorf("launch %s: %w", run.Name, err)
	}
	ctx, stop := context.WithTimeout(context.Background(), run.Deadline)
	cmd, output, signalled := l.command(ctx, run)
	if creds != "" {
		cmd.Env = append(cmd.Env, EnvNATSCreds+"="+creds)
	}
	if err := startInOwnGroup(cmd); err != nil {
		stop()
		_ = os.Remove(creds)
		return fmt.Errorf("launch %s: %w", run.Name, err)
	}
	l.log.Info("training run started", "run", run.Name, "function", run.Function, "pid", cmd.Process.Pid)
	started := &processRun{stop: stop, status: RunStatus{Phase: Running}}
	l.runs[run.Name] = started
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer stop()
		if creds != "" {
			defer os.Remove(creds)
		}
		err := cmd.Wait()
		// The trainer's own children are in its group: none outlives the run.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		output.flush()
		status := processStatus(cmd.ProcessState, err, *signalled, ctx.Err(), run.Deadline)
		l.log.Info("training run ended", "run", run.Name, "function", run.Function,
			"phase", status.Phase, "reason", status.Reason, "message", status.Message)
		l.mu.Lock()
		started.status = status
		l.mu.Unlock()
	}()
	return nil
}

// credentialsFile writes run's credentials to a file only this user may
// read, for the run's life; "" when it has none.
func credentialsFile(run Run) (string, error) {
	if run.Credentials == nil {
		return "", nil
	}
	file, err := os.CreateTemp("", "sluice-"+run.Name+"-*.creds") // 0600
	if err != nil {
		return "", err
	}
	if _, err := file.Write(run.Credentials); err != nil {
		file.Close()
		os.Remove(file.Name())
		return "", err
	}
	return file.Name(), file.Close()
}

// Status reports on a run launched since the launcher was made.
func (l *ProcessLauncher) Status(_ context.Context, name string) (RunStatus, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	run, ok := l.runs[name]
	if !ok {
		return RunStatus{}, fmt.Errorf("status %s: %w", name, ErrRunNotFound)
	}
	return run.status, nil
}

// Close stops every running trainer — SIGTERM to its process group, SIGKILL
// after StopTimeout — and waits until all have exited. Launch fails after
// Close; Status still answers.
func (l *ProcessLauncher) Close() {
	l.mu.Lock()
	l.closed = true
	for _, run := range l.runs {
		run.stop()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// command builds the run's process, stopped through its process group when
// ctx ends. *signalled tells, once Wait has returned, whether it was.
func (l *ProcessLauncher) command(ctx context.Context, run Run) (*exec.Cmd, *prefixWriter, *bool) {
	cmd := exec.CommandContext(ctx, l.cfg.Program, run.Args...)
	cmd.Dir = l.cfg.Dir
	cmd.Env = os.Environ()
	names := make([]string, 0, len(run.Env))
	for name := range run.Env {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cmd.Env = append(cmd.Env, name+"="+run.Env[name])
	}
	output := &prefixWriter{mu: &l.outputMu, out: l.cfg.Output, prefix: []byte(run.Name + ": ")}
	cmd.Stdout, cmd.Stderr = output, output // one writer: exec calls it from one goroutine at a time
	signalled := new(bool)
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone // the group is gone: the trainer exited already
		} else if err != nil {
			return err
		}
		*signalled = true // read after Wait, which waits for this function
		return nil
	}
	cmd.WaitDelay = l.cfg.StopTimeout
	return cmd, output, signalled
}

// startInOwnGroup starts cmd in a process group of its own, so that a Ctrl-C
// at the terminal reaches only sluice, and a deadline stops the trainer's
// children too; and a trainer outlives no sluice: if this process dies, the
// kernel sends SIGTERM (Pdeathsig follows the starting thread, hence the lock).
func startInOwnGroup(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}

// processStatus says how a run ended: state is its exit (nil if it could not
// be waited for, then waitErr says why), signalled whether it was stopped,
// and stopped why its context ended, if it did.
func processStatus(state *os.ProcessState, waitErr error, signalled bool, stopped error, deadline time.Duration) RunStatus {
	switch {
	case state == nil:
		return RunStatus{Phase: Failed, Reason: ReasonTrainerFailed, Message: fmt.Sprintf("trainer: %v", waitErr)}
	case signalled && errors.Is(stopped, context.DeadlineExceeded):
		return RunStatus{Phase: Failed, Reason: ReasonDeadlineExceeded, Message: fmt.Sprintf("stopped at its deadline of %s", deadline)}
	case signalled:
		return RunStatus{Phase: Failed, Reason: ReasonTrainerFailed, Message: "stopped: the launcher was closed"}
	case state.Success():
		return RunStatus{Phase: Succeeded}
	}
	return RunStatus{Phase: Failed, Reason: ReasonTrainerFailed, Message: fmt.Sprintf("trainer exited: %s", state)}
}

// maxPartialLine bounds the output held back while waiting for a line's end.
const maxPartialLine = 64 << 10

// prefixWriter writes each whole line of a run's output to out, prefixed by
// the run's name; it holds a partial line back until its end, maxPartialLine
// or flush. exec calls Write from one goroutine at a time; mu serialises the
// writes of every run to out.
type prefixWriter struct {
	mu     *sync.Mutex
	out    io.Writer
	prefix []byte
	line   []byte // the partial line
}

// Write never fails: a trainer must not die because its output cannot be written.
func (w *prefixWriter) Write(p []byte) (int, error) {
	w.line = append(w.line, p...)
	end := bytes.LastIndexByte(w.line, '\n') + 1
	if end == 0 && len(w.line) >= maxPartialLine {
		w.line = append(w.line, '\n')
		end = len(w.line)
	}
	if end > 0 {
		w.emit(w.line[:end])
		w.line = append(w.line[:0], w.line[end:]...)
	}
	return len(p), nil
}

// flush writes the partial line left once the process has exited.
func (w *prefixWriter) flush() {
	if len(w.line) > 0 {
		w.emit(append(w.line, '\n'))
		w.line = nil
	}
}

// emit writes whole lines, each with the prefix, in one Write.
func (w *prefixWriter) emit(lines []byte) {
	var prefixed []byte
	for len(lines) > 0 {
		end := bytes.IndexByte(lines, '\n') + 1
		prefixed = append(append(prefixed, w.prefix...), lines[:end]...)
		lines = lines[end:]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.out.Write(prefixed)
}
