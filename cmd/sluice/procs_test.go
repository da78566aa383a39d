package main

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBoundProcsFollowsTheSessionsUnlessGOMAXPROCSIsSet(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	for _, c := range []struct{ given, cores, want int }{
		{given: 4, cores: 1, want: 1},
		{given: 4, cores: 3, want: 3},
		{given: 4, cores: 8, want: 4}, // never more than the machine (or its cgroup) gives
		{given: 4, cores: 0, want: 1},
	} {
		runtime.GOMAXPROCS(c.given)
		boundProcs(c.cores)
		assert.Equal(t, c.want, runtime.GOMAXPROCS(0), "%d cores of %d", c.cores, c.given)
	}
	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	boundProcs(1)
	assert.Equal(t, 3, runtime.GOMAXPROCS(0), "GOMAXPROCS set by the operator")
}
