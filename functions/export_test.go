package functions

import "time"

// SetPruneEvery sets how often registries look for Functions purged from
// the catalog, for the tests that purge it.
func SetPruneEvery(d time.Duration) { pruneEvery = d }
