package batch

import (
	"context"
	"time"
)

// write writes the chunks in input order as they resolve, freeing a slot
// per chunk written. Chunks whose announcement has not come within
// PollInterval of their publish are looked up in the results bucket.
func (j *job) write(ctx context.Context, chunks <-chan *chunk, slots <-chan struct{}, progress func(rows int)) error {
	ticker := time.NewTicker(j.cfg.PollInterval / 2)
	defer ticker.Stop()
	var window []*chunk
	var lines []byte
	for chunks != nil || len(window) > 0 {
		if len(window) > 0 && window[0].resolved() {
			head := window[0]
			window = window[1:]
			if err := j.writeChunk(head, &lines, progress); err != nil {
				return err
			}
			<-slots
			continue
		}
		var headDone <-chan struct{}
		if len(window) > 0 {
			headDone = window[0].done
		}
		select {
		case c, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			window = append(window, c)
		case <-headDone:
		case now := <-ticker.C:
			j.poll(ctx, window, now)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// writeChunk appends the chunk's lines to the output, syncing at this
// chunk boundary when SyncInterval has passed.
func (j *job) writeChunk(c *chunk, lines *[]byte, progress func(rows int)) error {
	var scored, failed int
	*lines, scored, failed = c.render((*lines)[:0])
	if err := j.out.write(*lines); err != nil {
		return err
	}
	if err := j.out.boundary(time.Now()); err != nil {
		return err
	}
	j.report.Scored += scored
	j.report.Failed += failed
	j.report.Written += scored + failed
	if progress != nil {
		progress(scored + failed)
	}
	return nil
}

// poll looks up, in the results bucket, the published chunks of window
// that have waited PollInterval for their announcement.
func (j *job) poll(ctx context.Context, window []*chunk, now time.Time) {
	for _, c := range window {
		if c.resolved() || c.published.IsZero() || now.Sub(c.published) < j.cfg.PollInterval {
			continue
		}
		j.lookup(ctx, c)
	}
}
