package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proc is a process of the built binary that a test starts, stops, kills,
// pauses and starts again with the same arguments.
type proc struct {
	name   string
	args   []string
	logs   *syncBuffer
	cmd    *exec.Cmd
	exited chan error
}

// startProc starts `sluice args...` and stops it, if it still runs, when the test ends.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, args: args, logs: &syncBuffer{}}
	p.start(t)
	t.Cleanup(func() {
		p.signal(syscall.SIGCONT)
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s output (last 8 KiB):\n%s", p.name, tail(p.logs.String(), 8<<10))
		}
	})
	return p
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(binary, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.WaitDelay = 5 * time.Second
	require.NoError(t, p.cmd.Start(), p.name)
	p.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan error) { exited <- cmd.Wait() }(p.cmd, p.exited)
}

// stop sends sig and waits for the process to exit; it does nothing to one
// that has exited.
func (p *proc) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// signal sends sig (SIGSTOP pauses, SIGCONT resumes) without waiting.
func (p *proc) signal(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// rss is the resident memory of the process now, in bytes.
func (p *proc) rss() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
