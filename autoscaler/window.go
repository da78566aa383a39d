package autoscaler

import "time"

// window keeps timestamped depth samples and averages those within a span.
// It holds at most as many samples as the longest span needs at one per tick.
type window struct {
	samples []sample
	keep    time.Duration
}

type sample struct {
	at    time.Time
	depth float64
}

func newWindow(keep time.Duration) *window { return &window{keep: keep} }

// add records depth at now and forgets samples older than the window.
func (w *window) add(now time.Time, depth float64) {
	w.samples = append(w.samples, sample{at: now, depth: depth})
	drop := 0
	for drop < len(w.samples) && now.Sub(w.samples[drop].at) > w.keep {
		drop++
	}
	w.samples = w.samples[drop:]
}

// average is the mean depth of the samples taken within span of now.
func (w *window) average(now time.Time, span time.Duration) float64 {
	var sum float64
	var n int
	for i := len(w.samples) - 1; i >= 0 && now.Sub(w.samples[i].at) <= span; i-- {
		sum += w.samples[i].depth
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
