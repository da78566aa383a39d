package events

import (
	"context"
	"time"
)

// Every calls do each interval until ctx ends: the loop of every component
// that looks again at something now and then.
func Every(ctx context.Context, interval time.Duration, do func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			do()
		}
	}
}
