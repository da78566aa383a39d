package autoscaler

import "sluice.dev/sluice/functions"

// catalogView is the autoscaler's read of the deployed functions.
type catalogView interface {
	Names() []string
	Lookup(name string) (*functions.Function, bool)
}
