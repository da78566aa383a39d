package functions

import (
	"context"
	"fmt"

	"sluice.dev/sluice/events/access"
)

// WorkerAccess is what the worker of one revision of fn may do on the bus:
// consume that revision's queue and read the very object of the model it
// was deployed with (events/access.Worker), whose id it reads from the store.
func (c *Catalog) WorkerAccess(ctx context.Context, fn *Function, revision string) (access.Permissions, error) {
	function := fn.Metadata.Name
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
