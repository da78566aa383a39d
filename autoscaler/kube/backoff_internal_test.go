package kube

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A /scale write that keeps losing its race is retried for seconds, not
// cut short: wait.Backoff stops at its Cap, which once ended the retries
// after about 0.6 s.
func TestConflictBackoffLastsSeconds(t *testing.T) {
	backoff := conflictBackoff
	backoff.Jitter = 0
	// As wait.ExponentialBackoff spends it: a try per step, a wait between two.
	var total time.Duration
	tries := 0
	for backoff.Steps > 0 {
		tries++
		if backoff.Steps == 1 {
			break
		}
		total += backoff.Step()
	}
	require.Equal(t, 13, tries)
	require.Greater(t, total, 4*time.Second)
	require.Less(t, total, 6*time.Second)
}
