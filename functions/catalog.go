package functions

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/functions/onnxfile"
)

// ErrNotFound is returned when a function or model is not in the catalog.
var ErrNotFound = errors.New("not found")

// Catalog stores Functions in a NATS KV bucket and their models in a NATS object store.
type Catalog struct {
	kv     jetstream.KeyValue
	models jetstream.ObjectStore
}

// OpenCatalog creates the catalog's buckets if they do not exist yet.
func OpenCatalog(ctx context.Context, js jetstream.JetStream) (*Catalog, error) {
	kv, err := events.OpenOrCreateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      events.FunctionsBucket,
		Description: "Sluice functions",
		History:     5,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}
	models, err := events.OpenOrCreateObjectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket:      events.ModelsBucket,
		Description: "Sluice model versions (ONNX files)",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}
	return &Catalog{kv: kv, models: models}, nil
}

// Get returns the named Function, or an error wrapping ErrNotFound.
func (c *Catalog) Get(ctx context.Context, name string) (*Function, error) {
	fn, _, err := c.entry(ctx, name)
	return fn, err
}

// List returns every Function, sorted by name.
func (c *Catalog) List(ctx context.Context) ([]*Function, error) {
	lister, err := c.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	defer lister.Stop()
	var fns []*Function
	for name := range lister.Keys() {
		fn, err := c.Get(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue // deleted while listing
		}
		if err != nil {
			return nil, err
		}
		fns = append(fns, fn)
	}
	slices.SortFunc(fns, func(a, b *Function) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	return fns, nil
}

// errConflict says the Function changed since it was read.
var errConflict = errors.New("changed concurrently")

// entry returns the named Function and its KV revision (0 when absent).
func (c *Catalog) entry(ctx context.Context, name string) (*Function, uint64, error) {
	entry, err := c.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("function %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get function %q: %w", name, err)
	}
	fn, err := decodeFunction(entry.Value())
	return fn, entry.Revision(), err
}

// update stores fn if the stored value is still at KV revision version (0:
// absent), and returns errConflict if another writer came first.
func (c *Catalog) update(ctx context.Context, fn *Function, version uint64) error {
	data, err := json.Marshal(fn)
	if err != nil {
		return fmt.Errorf("encode function %q: %w", fn.Metadata.Name, err)
	}
	if version == 0 {
		_, err = c.kv.Create(ctx, fn.Metadata.Name, data)
	} else {
		_, err = c.kv.Update(ctx, fn.Metadata.Name, data, version)
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return fmt.Errorf("put function %q: %w", fn.Metadata.Name, errConflict)
	}
	if err != nil {
		return fmt.Errorf("put function %q: %w", fn.Metadata.Name, err)
	}
	return nil
}

// Modify reads the named Function, lets change modify it, and stores it if
// no other writer came first, reading and changing again when one did. A
// change that returns false stores nothing. It returns what is stored.
func (c *Catalog) Modify(ctx context.Context, name string, change func(fn *Function) (bool, error)) (*Function, error) {
	for attempt := 0; ; attempt++ {
		fn, version, err := c.entry(ctx, name)
		if err != nil {
			return nil, err
		}
		changed, err := change(fn)
		if err != nil || !changed {
			return fn, err
		}
		err = c.update(ctx, fn, version)
		if !errors.Is(err, errConflict) || attempt == 4 {
			return fn, err
		}
	}
}

// Watch calls changed with the name of every function in the catalog, then
// with the name of each one that changes or goes, until ctx ends.
func (c *Catalog) Watch(ctx context.Context, changed func(name string)) error {
	return events.WatchBucket(ctx, c.kv, func(name string, _ []byte, _ uint64) { changed(name) }, func() {})
}

// Put stores fn under its name.
func (c *Catalog) Put(ctx context.Context, fn *Function) error {
	data, err := json.Marshal(fn)
	if err != nil {
		return fmt.Errorf("encode function %q: %w", fn.Metadata.Name, err)
	}
	if _, err := c.kv.Put(ctx, fn.Metadata.Name, data); err != nil {
		return fmt.Errorf("put function %q: %w", fn.Metadata.Name, err)
	}
	return nil
}

// Delete removes the named Function from the catalog.
func (c *Catalog) Delete(ctx context.Context, name string) error {
	if _, err := c.Get(ctx, name); err != nil {
		return err
	}
	if err := c.kv.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete function %q: %w", name, err)
	}
	return nil
}

// PutModel stores an ONNX file for function, named by its sha256 so the same
// file is stored once, and returns its version with the signature read from
// it, and with training, when a trainer made it, kept beside it.
func (c *Catalog) PutModel(ctx context.Context, function string, model []byte, training *Training) (*ModelVersion, error) {
	signature, err := onnxfile.ReadSignature(model)
	if err != nil {
		return nil, fmt.Errorf("model of %q: %w", function, err)
	}
	sum := sha256Hex(model)
	version := &ModelVersion{
		Object:    function + "/" + sum + ".onnx",
		SHA256:    sum,
		Size:      int64(len(model)),
		Signature: signature,
		Training:  training,
	}
	signatureJSON, err := json.Marshal(signature)
	if err != nil {
		return nil, err
	}
	meta := jetstream.ObjectMeta{
		Name:        version.Object,
		Description: "ONNX model of function " + function,
		Metadata:    map[string]string{"sha256": version.SHA256, "signature": string(signatureJSON)},
	}
	if training != nil {
		trainingJSON, err := json.Marshal(training)
		if err != nil {
			return nil, err
		}
		meta.Metadata[trainingMetadata] = string(trainingJSON)
	}
	if _, err := c.models.Put(ctx, meta, bytes.NewReader(model)); err != nil {
		return nil, fmt.Errorf("upload model %s: %w", version.Object, err)
	}
	return version, nil
}

// trainingMetadata is the object metadata key of a model's Training.
const trainingMetadata = "training"

// ModelFromStore describes an object already in the model store, reading
// its signature, and what its trainer recorded.
func (c *Catalog) ModelFromStore(ctx context.Context, object string) (*ModelVersion, []byte, error) {
	data, err := c.GetObject(ctx, object)
	if err != nil {
		return nil, nil, err
	}
	signature, err := onnxfile.ReadSignature(data)
	if err != nil {
		return nil, nil, fmt.Errorf("model %q: %w", object, err)
	}
	version := &ModelVersion{Object: object, SHA256: sha256Hex(data), Size: int64(len(data)), Signature: signature}
	info, err := c.models.GetInfo(ctx, object)
	if err != nil {
		return nil, nil, fmt.Errorf("model %q: %w", object, err)
	}
	if recorded := info.Metadata[trainingMetadata]; recorded != "" {
		version.Training = &Training{}
		if err := json.Unmarshal([]byte(recorded), version.Training); err != nil {
			return nil, nil, fmt.Errorf("model %q: its training record: %w", object, err)
		}
	}
	return version, data, nil
}

// PutData stores a function's base training data, a CSV file, named by its
// sha256, and returns the object's name: what spec.retrain.data.uri names.
func (c *Catalog) PutData(ctx context.Context, function string, data []byte) (string, error) {
	object := dataObject(function, sha256Hex(data))
	meta := jetstream.ObjectMeta{Name: object, Description: "training data of function " + function}
	if _, err := c.models.Put(ctx, meta, bytes.NewReader(data)); err != nil {
		return "", fmt.Errorf("upload data %s: %w", object, err)
	}
	return object, nil
}

func dataObject(function, sha256 string) string { return function + "/data/" + sha256 + ".csv" }

// DeleteObjectsOf removes the objects of the model store named under
// function's prefix (its model versions and base data), except those
// another function's spec or live revisions name.
func (c *Catalog) DeleteObjectsOf(ctx context.Context, function string) error {
	objects, err := c.models.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list the model store: %w", err)
	}
	others, err := c.List(ctx)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, fn := range others {
		used[fn.Spec.Model.URI] = true
		if fn.Spec.Retrain != nil {
			used[fn.Spec.Retrain.Data.URI] = true
			used[DataObject(fn)] = true
		}
		for _, revision := range fn.Status.Revisions {
			used[revision.Model.Object] = true
		}
	}
	var errs []error
	for _, object := range objects {
		if strings.HasPrefix(object.Name, function+"/") && !used[object.Name] {
			if err := c.models.Delete(ctx, object.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				errs = append(errs, fmt.Errorf("delete object %s: %w", object.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// GetObject downloads an object of the model store: a model or data.
func (c *Catalog) GetObject(ctx context.Context, object string) ([]byte, error) {
	data, err := c.models.GetBytes(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("object %q of the model store: %w", object, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get object %q: %w", object, err)
	}
	return data, nil
}

// GetModel downloads a model version and checks it against its sha256: an
// object replaced since it was deployed is refused with ErrModelChanged,
// before its chunks are read when the store's own digest already differs.
// The description is read on its own first (GetBytes reads it again) because
// a worker's user may read the chunks of its deployed object only: a
// replaced object's chunks would be refused, not reported as changed.
func (c *Catalog) GetModel(ctx context.Context, version ModelVersion) ([]byte, error) {
	info, err := c.models.GetInfo(ctx, version.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("model %q: %w", version.Object, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get model %q: %w", version.Object, err)
	}
	if want, err := hex.DecodeString(version.SHA256); err == nil && info.Digest != "SHA-256="+base64.URLEncoding.EncodeToString(want) {
		return nil, fmt.Errorf("model %q: %w: its digest is %s, want sha256 %s", version.Object, ErrModelChanged, info.Digest, version.SHA256)
	}
	data, err := c.models.GetBytes(ctx, version.Object)
	if err != nil {
		return nil, fmt.Errorf("get model %q: %w", version.Object, err)
	}
	if err := CheckSHA256(data, version.SHA256); err != nil {
		return nil, fmt.Errorf("model %q: %w: %v", version.Object, ErrModelChanged, err)
	}
	return data, nil
}

// CheckSHA256 reports whether data has the given hex sha256.
func CheckSHA256(data []byte, want string) error {
	if got := sha256Hex(data); got != want {
		return fmt.Errorf("sha256 is %s, want %s", got, want)
	}
	return nil
}

func decodeFunction(data []byte) (*Function, error) {
	var fn Function
	if err := json.Unmarshal(data, &fn); err != nil {
		return nil, fmt.Errorf("decode function: %w", err)
	}
	return &fn, nil
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
