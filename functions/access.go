package functions

import (
	"context"
	"fmt"

	"sluice.dev/sluice/events/access"
)

// WorkerAccess is what the worker of one revision of a function may do on
// the bus: consume that revision's queue and read the very object of the
// model it was deployed with (events/access.Worker).
func (c *Catalog) WorkerAccess(ctx context.Context, function, revision string) (access.Permissions, error) {
	fn, err := c.Get(ctx, function)
	if err != nil {
		return access.Permissions{}, err
	}
	r, ok := fn.Status.FindRevision(revision)
	if !ok {
		return access.Permissions{}, fmt.Errorf("function %q has no revision %q: %w", function, revision, ErrNotFound)
	}
	info, err := c.models.GetInfo(ctx, r.Model.Object)
	if err != nil {
		return access.Permissions{}, fmt.Errorf("model %q of revision %s: %w", r.Model.Object, revision, err)
	}
	return access.Worker(function, revision, access.ModelObject{Name: info.Name, NUID: info.NUID}), nil
}
