package retrain

import (
	"context"
	"errors"
	"time"
)

// Run is one training run: the trainer's arguments and environment, the
// same on one machine and on Kubernetes. A Launcher adds what runs them —
// the sluice binary for a child process, the sluice image for a Job.
type Run struct {
	// Name is unique per run and is the Job's name on Kubernetes: a DNS
	// label such as "iris-retrain-7".
	Name string
	// Function is the function the run trains a new version of.
	Function string
	// Args are the trainer's arguments after the program, e.g.
	// ["train", "--function", "iris", "--publish"].
	Args []string
	// Env is the trainer's environment (the trainer contract's variables).
	Env map[string]string
	// Credentials, when set, are the run's own NATS credentials: the
	// launcher hands them to the trainer as a file that EnvNATSCreds names,
	// never in its environment.
	Credentials []byte
	// Deadline bounds the run from its start; past it the run is stopped
	// and fails with ReasonDeadlineExceeded.
	Deadline time.Duration
}

// Phase is where a run is.
type Phase string

// The phases of a run; Succeeded and Failed are final.
const (
	Running   Phase = "Running"
	Succeeded Phase = "Succeeded"
	Failed    Phase = "Failed"
)

// Reasons a run failed, the same for every Launcher.
const (
	// ReasonDeadlineExceeded: the run was stopped at its Deadline.
	ReasonDeadlineExceeded = "DeadlineExceeded"
	// ReasonTrainerFailed: the trainer exited non-zero.
	ReasonTrainerFailed = "TrainerFailed"
)

// RunStatus is what a Launcher knows of a run.
type RunStatus struct {
	Phase Phase
	// Reason says why a run Failed: one of the Reason constants.
	Reason string
	// Message is a line a person can act on, e.g. the exit status.
	Message string
}

// Done says whether the run has finished, one way or the other.
func (s RunStatus) Done() bool { return s.Phase == Succeeded || s.Phase == Failed }

// ErrRunNotFound is returned by Status for a run the Launcher does not know.
var ErrRunNotFound = errors.New("training run not found")

// Launcher starts training runs and reports on them: a child process with
// sluice up (ProcessLauncher), a batch/v1 Job on Kubernetes
// (functions/kube.JobLauncher).
type Launcher interface {
	// Launch starts run. Launching a name that exists already starts nothing
	// and returns nil, so a retried decision starts one run.
	Launch(ctx context.Context, run Run) error
	// Status reports on the named run, or returns ErrRunNotFound.
	Status(ctx context.Context, name string) (RunStatus, error)
}
