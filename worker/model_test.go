package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions"
	"sluice.dev/sluice/worker"
)

func TestLoadModel(t *testing.T) {
	tests := []struct {
		name string
		// prepare changes the store or the cache before LoadModel runs.
		prepare func(t *testing.T, store jetstream.ObjectStore, version functions.ModelVersion, cached string)
		noCache bool
		// wantErr is part of the error; "" when LoadModel gives the model.
		wantErr string
		// wantCached says whether the cache holds the model afterwards.
		wantCached bool
	}{
		{
			name:       "cache miss fetches and fills the cache",
			prepare:    func(*testing.T, jetstream.ObjectStore, functions.ModelVersion, string) {},
			wantCached: true,
		},
		{
			name: "cache hit does not touch the store",
			prepare: func(t *testing.T, store jetstream.ObjectStore, version functions.ModelVersion, cached string) {
				model, err := store.GetBytes(context.Background(), version.Object)
				require.NoError(t, err)
				require.NoError(t, os.MkdirAll(filepath.Dir(cached), 0o755))
				require.NoError(t, os.WriteFile(cached, model, 0o644))
				require.NoError(t, store.Delete(context.Background(), version.Object))
			},
			wantCached: true,
		},
		{
			name: "corrupted cache file is ignored and fetched again",
			prepare: func(t *testing.T, _ jetstream.ObjectStore, _ functions.ModelVersion, cached string) {
				require.NoError(t, os.MkdirAll(filepath.Dir(cached), 0o755))
				require.NoError(t, os.WriteFile(cached, []byte("half a model"), 0o644))
			},
			wantCached: true,
		},
		{
			name: "sha256 mismatch from the store",
			prepare: func(t *testing.T, store jetstream.ObjectStore, version functions.ModelVersion, _ string) {
				_, err := store.PutBytes(context.Background(), version.Object, []byte("some other model"))
				require.NoError(t, err)
			},
			wantErr: functions.ErrModelChanged.Error(),
		},
		{
			name: "model not in the store",
			prepare: func(t *testing.T, store jetstream.ObjectStore, version functions.ModelVersion, _ string) {
				require.NoError(t, store.Delete(context.Background(), version.Object))
			},
			wantErr: "not found",
		},
		{
			name:    "no cache folder",
			prepare: func(*testing.T, jetstream.ObjectStore, functions.ModelVersion, string) {},
			noCache: true,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			ctx := context.Background()
			p := deployIris(t)
			version := *p.fn.Status.Model
			store, err := p.js.ObjectStore(ctx, events.ModelsBucket)
			require.NoError(t, err)
			cacheDir := filepath.Join(t.TempDir(), "models")
			cached := filepath.Join(cacheDir, version.SHA256+".onnx")
			test.prepare(t, store, version, cached)
			if test.noCache {
				cacheDir = ""
			}

			model, err := worker.LoadModel(ctx, p.catalog, version, cacheDir)
			if test.wantErr != "" {
				require.ErrorContains(t, err, test.wantErr)
				require.Nil(t, model)
			} else {
				require.NoError(t, err)
				require.Equal(t, p.model, model)
				require.NoError(t, functions.CheckSHA256(model, version.SHA256))
			}
			onDisk, err := os.ReadFile(cached)
			if !test.wantCached {
				require.ErrorIs(t, err, os.ErrNotExist, "nothing is cached")
				return
			}
			require.NoError(t, err)
			require.Equal(t, p.model, onDisk)
			leftovers, err := filepath.Glob(filepath.Join(cacheDir, ".model-*"))
			require.NoError(t, err)
			require.Empty(t, leftovers, "temporary files left in the cache")
		})
	}
}
