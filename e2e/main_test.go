// Package e2e tests the built sluice binary as separate processes, the way a
// user runs it: `sluice train`, `sluice up`, curl-like HTTP calls, `sluice predict`.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the sluice binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", binary, "../cmd/sluice")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	stopPodman()
	os.RemoveAll(dir)
	os.Exit(code)
}
