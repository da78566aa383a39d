package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Storage keeps a server's JetStream writing. A write that fails, most often
// because the disk is full, stops the stream that made it until JetStream
// loads it again, which nats-server does only when it restarts. Storage sees
// the failure in the server's log, reports it in Health, and once the disk
// has room again restarts JetStream inside the process: every stream is
// loaded from disk again, and clients carry on where they were.
type Storage struct {
	srv *server.Server
	// dir is the store directory as configured (JetStream adds "jetstream").
	dir string
	// config is JetStream's configuration at start, to start it again with.
	config server.JetStreamConfig
	// failure is the write error JetStream stopped at; nil while it writes.
	failure atomic.Pointer[string]
	log     *slog.Logger
}

// ResumeFree is how much room the disk must have again before JetStream is
// restarted after a failed write; it is also the free space under which
// Health warns that the disk is nearly full.
const ResumeFree = 16 << 20

// WatchStorage follows the JetStream storage of srv, which runs, until srv
// shuts down; the server's logs go to next from now on. A server of a
// cluster is not restarted in the process: its streams' other replicas
// take over, and Health says what it waits for (a restart of its process,
// once the disk has room).
func WatchStorage(srv *server.Server, next server.Logger, log *slog.Logger) *Storage {
	s := &Storage{srv: srv, log: log}
	if cfg := srv.JetStreamConfig(); cfg != nil {
		// JetStream keeps its files in "jetstream" under the directory configured.
		s.config, s.dir = *cfg, filepath.Dir(cfg.StoreDir)
		s.config.StoreDir = s.dir
	}
	srv.SetLoggerV2(watchedLog{Logger: next, storage: s}, false, false, false)
	if !srv.JetStreamIsClustered() {
		go s.run(time.Second)
	}
	return s
}

// run restarts JetStream once the disk has room after a failed write; it
// returns when the server shuts down.
func (s *Storage) run(interval time.Duration) {
	for s.srv.Running() {
		time.Sleep(interval)
		failure := s.failure.Load()
		if failure == nil || s.free() < ResumeFree {
			continue
		}
		s.log.Warn("the disk has room again: restarting JetStream, which loads every stream again", "store_dir", s.dir)
		s.failure.CompareAndSwap(failure, nil) // before: a write that fails while the streams load is kept
		if s.srv.JetStreamEnabled() {
			s.srv.ShutdownJetStream()
		}
		config := s.config
		if err := s.srv.EnableJetStream(&config); err != nil {
			s.log.Error("restart JetStream", "error", err)
			reason := "restart JetStream: " + err.Error()
			s.failure.CompareAndSwap(nil, &reason) // tried again at the next turn
		}
	}
}

// Health says what keeps the server from storing messages now, nil when
// nothing does: JetStream off, a write that failed, a disk nearly full.
func (s *Storage) Health() error {
	free := s.free()
	if failure := s.failure.Load(); failure != nil {
		return fmt.Errorf("JetStream cannot write to the disk of %s (%s); it resumes by itself once %d MiB are free there (%d MiB now)", s.dir, *failure, ResumeFree>>20, free>>20)
	}
	off := !s.srv.JetStreamEnabled()
	switch {
	case free < ResumeFree && off:
		return fmt.Errorf("JetStream is off, and the disk of %s is nearly full: %d KiB free", s.dir, free>>10)
	case free < ResumeFree:
		return fmt.Errorf("the disk of %s is nearly full: %d KiB free", s.dir, free>>10)
	case off:
		return errors.New("JetStream is off")
	}
	return nil
}

// free is the room left on the disk of the store directory.
func (s *Storage) free() int64 { return Free(s.dir) }

// Used is the size of the files under dir; 0 when there are none.
func Used(dir string) int64 {
	var used int64
	_ = filepath.WalkDir(dir, func(_ string, entry fs.DirEntry, err error) error {
		if err == nil && entry.Type().IsRegular() {
			if info, err := entry.Info(); err == nil {
				used += info.Size()
			}
		}
		return nil
	})
	return used
}

// Free is the room left on the disk of dir, or of its nearest parent that
// exists; 0 when it cannot be read.
func Free(dir string) int64 {
	var stat syscall.Statfs_t
	for syscall.Statfs(dir, &stat) != nil {
		if parent := filepath.Dir(dir); parent != dir {
			dir = parent
			continue
		}
		return 0
	}
	return int64(stat.Bavail) * stat.Bsize
}

// watchedLog passes the server's logs on and notes a failed write.
type watchedLog struct {
	server.Logger
	storage *Storage
}

func (l watchedLog) Errorf(format string, v ...any) {
	l.Logger.Errorf(format, v...)
	if message := fmt.Sprintf(format, v...); strings.Contains(strings.ToLower(message), "critical write error") {
		_, cause, _ := strings.Cut(message, "error: ")
		l.storage.failure.CompareAndSwap(nil, &cause)
	}
}
