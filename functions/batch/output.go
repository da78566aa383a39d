package batch

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"
)

// output is the append-only result file. Complete lines are the rows that
// are done; a partial last line, left by a crash, is cut off when the file
// is opened. It is owned by the writer loop of Run.
type output struct {
	file     *os.File
	buffer   *bufio.Writer
	synced   time.Time
	interval time.Duration
}

// openOutput opens path for appending, creating it if needed, and returns
// how many complete lines it already holds.
func openOutput(path string, syncInterval time.Duration) (*output, int, error) {
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("open output: %w", err)
	}
	lines, complete, err := countLines(file)
	if err == nil {
		err = file.Truncate(complete)
	}
	if err == nil {
		_, err = file.Seek(complete, io.SeekStart)
	}
	if err != nil {
		file.Close()
		return nil, 0, fmt.Errorf("resume output %s: %w", path, err)
	}
	out := &output{file: file, buffer: bufio.NewWriterSize(file, 256<<10), synced: time.Now(), interval: syncInterval}
	return out, lines, nil
}

// countLines returns the number of '\n'-terminated lines of r and the
// offset just after the last one.
func countLines(r io.Reader) (lines int, complete int64, err error) {
	buffer := make([]byte, 256<<10)
	var offset int64
	for {
		n, readErr := r.Read(buffer)
		chunk := buffer[:n]
		for {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				break
			}
			lines++
			complete = offset + int64(i) + 1
			offset += int64(i) + 1
			chunk = chunk[i+1:]
		}
		offset += int64(len(chunk))
		if readErr == io.EOF {
			return lines, complete, nil
		}
		if readErr != nil {
			return 0, 0, readErr
		}
	}
}

// write appends complete lines.
func (o *output) write(lines []byte) error {
	if _, err := o.buffer.Write(lines); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// boundary is called after each chunk: it syncs when the interval has passed.
func (o *output) boundary(now time.Time) error {
	if now.Sub(o.synced) < o.interval {
		return nil
	}
	o.synced = now
	return o.sync()
}

// sync writes the buffer out and fsyncs the file.
func (o *output) sync() error {
	if err := o.buffer.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := o.file.Sync(); err != nil {
		return fmt.Errorf("sync output: %w", err)
	}
	return nil
}

// close syncs and closes the file.
func (o *output) close() error {
	err := o.sync()
	if closeErr := o.file.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("close output: %w", closeErr)
	}
	return err
}
