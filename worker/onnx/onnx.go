// Package onnx runs ONNX models with ONNX Runtime. It is the only package of
// Sluice that uses cgo and the ONNX Runtime shared library.
package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
)

// Version of ONNX Runtime that `make deps` installs.
const Version = "1.30.0"

// LibraryEnv names the environment variable that points at libonnxruntime.so.
const LibraryEnv = "SLUICE_ONNXRUNTIME_LIB"

// defaultLibrary is where `make deps` caches the library, relative to the repository.
var defaultLibrary = filepath.Join(".cache", "onnxruntime", Version, "libonnxruntime.so")

// ErrNoLibrary says the ONNX Runtime shared library could not be found, and how to get it.
var ErrNoLibrary = errors.New("ONNX Runtime shared library not found: run `make deps` (it installs " +
	defaultLibrary + "), or point --onnxruntime-lib or " + LibraryEnv + " at libonnxruntime.so " + Version)

// FindLibrary returns the path of libonnxruntime.so: explicit if set, else the
// environment variable, else the `make deps` cache in the working directory,
// the executable's directory, or any of their parents.
func FindLibrary(explicit string) (string, error) {
	for _, candidate := range []string{explicit, os.Getenv(LibraryEnv)} {
		if candidate == "" {
			continue
		}
		if _, err := os.Stat(candidate); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNoLibrary, err)
		}
		return candidate, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			candidate := filepath.Join(dir, defaultLibrary)
			if _, err := os.Stat(candidate); err == nil {
				return candidate, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", ErrNoLibrary
}

var (
	initOnce sync.Once
	initErr  error
)

// disableTelemetry is the variable ONNX Runtime reads when it creates its environment.
const disableTelemetry = "ORT_DISABLE_TELEMETRY"

// Init loads the ONNX Runtime library and creates its environment, once per
// process. Later calls return the first call's result.
func Init(libraryPath string) error {
	initOnce.Do(func() {
		path, err := FindLibrary(libraryPath)
		if err != nil {
			initErr = err
			return
		}
		ort.SetSharedLibraryPath(path)
		// ONNX Runtime's own telemetry is off from the start, not only once
		// the environment exists: nothing of a model leaves the machine.
		if os.Getenv(disableTelemetry) == "" {
			_ = os.Setenv(disableTelemetry, "1")
		}
		if err := ort.InitializeEnvironment(); err != nil {
			initErr = fmt.Errorf("onnxruntime: initialize %s: %w", path, err)
			return
		}
		_ = ort.DisableTelemetry()
	})
	return initErr
}

// SessionConfig says how a model runs.
type SessionConfig struct {
	// Device is "cpu" or "gpu" (the CUDA execution provider).
	Device string
	// Threads is the intra-op thread count; 1 is fastest for small models.
	Threads int
	// GPUDevice is the CUDA device id when Device is "gpu".
	GPUDevice int
}

// DefaultSessionConfig runs on one CPU thread.
func DefaultSessionConfig() SessionConfig { return SessionConfig{Device: "cpu", Threads: 1} }

// Validate reports what is wrong with the configuration.
func (c SessionConfig) Validate() error {
	if c.Device != "cpu" && c.Device != "gpu" {
		return fmt.Errorf("onnx session: device must be cpu or gpu, got %q", c.Device)
	}
	if c.Threads < 1 {
		return fmt.Errorf("onnx session: threads must be at least 1, got %d", c.Threads)
	}
	return nil
}

// Session is one loaded model. Run is not safe for concurrent use: give each
// goroutine its own Session (two single-threaded sessions scale on two cores,
// one shared session does not).
type Session struct {
	session   *ort.DynamicAdvancedSession
	signature oip.Signature
	// inputs and outputs say how each tensor of the signature crosses into
	// ONNX Runtime (see onnxfile.Adapt); outputs of unknown rank add a
	// shape output to the session's outputs, after the signature's.
	inputs, outputs []onnxfile.Port
	// placeholder is the input fed to a model without inputs; nil otherwise.
	placeholder *ort.Tensor[bool]
}

// Load creates a session for model, whose inputs and outputs are signature's.
// Init must have succeeded first.
func Load(model []byte, signature oip.Signature, cfg SessionConfig) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !ort.IsInitialized() {
		return nil, errors.New("onnx: Init must be called before Load")
	}
	adapted, err := onnxfile.Adapt(model)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	if err := sameTensors(adapted.Signature, signature); err != nil {
		return nil, fmt.Errorf("onnx: the signature given is not the model's: %w", err)
	}
	options, err := sessionOptions(cfg)
	if err != nil {
		return nil, err
	}
	defer options.Destroy()
	inputs := make([]string, len(adapted.Inputs))
	for i, port := range adapted.Inputs {
		inputs[i] = port.Name
	}
	outputs := make([]string, len(adapted.Outputs))
	for i, port := range adapted.Outputs {
		outputs[i] = port.Name
		if port.Shape != "" {
			outputs = append(outputs, port.Shape)
		}
	}
	loaded := &Session{signature: signature, inputs: adapted.Inputs, outputs: adapted.Outputs}
	if adapted.Placeholder != "" {
		inputs = append(inputs, adapted.Placeholder)
		if loaded.placeholder, err = ort.NewTensor(ort.NewShape(1), []bool{false}); err != nil {
			return nil, fmt.Errorf("onnx: placeholder input: %w", err)
		}
	}
	loaded.session, err = ort.NewDynamicAdvancedSessionWithONNXData(adapted.Model, inputs, outputs, options)
	if err != nil {
		loaded.Close()
		return nil, fmt.Errorf("onnx: create session: %w", err)
	}
	return loaded, nil
}

func sessionOptions(cfg SessionConfig) (*ort.SessionOptions, error) {
	options, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	setup := []error{options.SetIntraOpNumThreads(cfg.Threads), options.SetInterOpNumThreads(1)}
	if cfg.Device == "gpu" {
		setup = append(setup, appendCUDA(options, cfg.GPUDevice))
	}
	if err := errors.Join(setup...); err != nil {
		options.Destroy()
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	return options, nil
}

func appendCUDA(options *ort.SessionOptions, device int) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("CUDA execution provider: %w", err)
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": fmt.Sprint(device)}); err != nil {
		return fmt.Errorf("CUDA execution provider: %w", err)
	}
	return options.AppendExecutionProviderCUDA(cuda)
}

// sameTensors reports the first input or output whose name, datatype or
// rank differs between the model's signature and the one given.
func sameTensors(model, given oip.Signature) error {
	for _, list := range []struct {
		role         string
		model, given []oip.TensorSpec
	}{{"inputs", model.Inputs, given.Inputs}, {"outputs", model.Outputs, given.Outputs}} {
		if len(list.model) != len(list.given) {
			return fmt.Errorf("the model has %d %s, the signature %d", len(list.model), list.role, len(list.given))
		}
		for i, spec := range list.model {
			other := list.given[i]
			if spec.Name != other.Name || spec.Datatype != other.Datatype || len(spec.Shape) != len(other.Shape) || (spec.Shape == nil) != (other.Shape == nil) {
				return fmt.Errorf("%s[%d] is %s %s %s in the model, %s %s %s in the signature", list.role, i,
					spec.Name, spec.Datatype, oip.FormatShape(spec.Shape), other.Name, other.Datatype, oip.FormatShape(other.Shape))
			}
		}
	}
	return nil
}

// Close releases the session.
func (s *Session) Close() error {
	var errs []error
	if s.placeholder != nil {
		errs = append(errs, s.placeholder.Destroy())
	}
	if s.session != nil {
		errs = append(errs, s.session.Destroy())
	}
	return errors.Join(errs...)
}

// Signature is the model's inputs and outputs.
func (s *Session) Signature() oip.Signature { return s.signature }
