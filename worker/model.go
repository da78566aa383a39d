package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions"
)

// modelStore is where model versions are downloaded from.
type modelStore interface {
	GetModel(ctx context.Context, version functions.ModelVersion) ([]byte, error)
}

// LoadModel returns the ONNX file of a model version, checked against its
// sha256: from cacheDir when a previous start left it there, else from the
// model store, keeping a copy in cacheDir for the next cold start. An empty
// cacheDir disables the cache.
func LoadModel(ctx context.Context, store modelStore, version functions.ModelVersion, cacheDir string) ([]byte, error) {
	cached := filepath.Join(cacheDir, version.SHA256+".onnx")
	if cacheDir != "" {
		if data, err := os.ReadFile(cached); err == nil && functions.CheckSHA256(data, version.SHA256) == nil {
			return data, nil
		}
	}
	data, err := store.GetModel(ctx, version)
	if err != nil {
		return nil, err
	}
	if cacheDir != "" {
		if err := writeFileAtomic(cached, data); err != nil {
			return nil, fmt.Errorf("cache model: %w", err)
		}
	}
	return data, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a reader
// never sees half a model.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".model-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// CannotRun is the Model of a revision whose model does not load: every
// request it is given fails with err, which wraps functions.ErrModelCannotRun,
// so callers get 503 with the reason instead of waiting for a worker.
func CannotRun(err error) Model { return cannotRun{err: err} }

type cannotRun struct{ err error }

func (m cannotRun) Run([]oip.Tensor) ([]oip.Tensor, error) { return nil, m.err }
