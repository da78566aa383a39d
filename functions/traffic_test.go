package functions_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/functions"
)

func TestPick(t *testing.T) {
	table := functions.Traffic{{Revision: "1", Weight: 90}, {Revision: "2", Weight: 10}, {Revision: "3", Weight: 0}}
	tests := []struct {
		name  string
		table functions.Traffic
		u     float64
		want  string
	}{
		{name: "low u takes the first", table: table, u: 0, want: "1"},
		{name: "just below the first's share", table: table, u: 0.8999, want: "1"},
		{name: "the second's share", table: table, u: 0.9, want: "2"},
		{name: "the top of the range", table: table, u: 0.9999999, want: "2"},
		{name: "weights need not sum to 100", table: functions.Traffic{{Revision: "a", Weight: 1}, {Revision: "b", Weight: 1}}, u: 0.5, want: "b"},
		{name: "no weight at all", table: functions.Traffic{{Revision: "1", Weight: 0}}, u: 0.3, want: ""},
		{name: "an empty table", table: nil, u: 0.3, want: ""},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			require.Equal(t, test.want, functions.Pick(test.table, "", test.u))
		})
	}
}

// TestPickByKey: a key always reaches the same revision, and keys spread
// over the revisions in proportion to the weights.
func TestPickByKey(t *testing.T) {
	table := functions.Traffic{{Revision: "1", Weight: 80}, {Revision: "2", Weight: 20}}
	counts := map[string]int{}
	for i := range 10_000 {
		key := fmt.Sprintf("customer-%d", i)
		first := functions.Pick(table, key, 0)
		require.Equal(t, first, functions.Pick(table, key, 0.99), "u does not matter with a key")
		counts[first]++
	}
	require.InDelta(t, 8000, counts["1"], 300)
	require.InDelta(t, 2000, counts["2"], 300)
}

func TestRoute(t *testing.T) {
	status := functions.Status{
		Revision:  "3",
		Revisions: []functions.RevisionStatus{{Name: "1", State: functions.RevisionReady}, {Name: "2"}, {Name: "3", State: functions.RevisionFailed, Reason: "no kernel"}},
	}
	route := func(t *testing.T, status functions.Status, version string, u float64) string {
		t.Helper()
		revision, err := status.Route(version, "", u)
		require.NoError(t, err)
		return revision.Name
	}
	require.Equal(t, "2", route(t, status, "", 0.5), "without a table: the revision Serving falls back to")
	require.Equal(t, "1", route(t, status, "1", 0.5), "a version asked for")

	status.Traffic = functions.Traffic{{Revision: "1", Weight: 50}, {Revision: "2", Weight: 50}, {Revision: "3", Weight: 50}, {Revision: "9", Weight: 50}}
	require.Equal(t, functions.Traffic{{Revision: "1", Weight: 50}, {Revision: "2", Weight: 50}}, status.TrafficTable(), "a failed revision and one no longer live take nothing")
	require.Equal(t, "1", route(t, status, "", 0.2))
	require.Equal(t, "2", route(t, status, "", 0.7))

	status.Traffic = functions.Traffic{{Revision: "3", Weight: 100}}
	require.Equal(t, "2", route(t, status, "", 0.5), "a table left without weight falls back as Serving does")

	status.Revisions[0].State, status.Revisions[1].State = functions.RevisionFailed, functions.RevisionFailed
	_, err := status.Route("", "", 0.5)
	require.ErrorIs(t, err, functions.ErrModelCannotRun)
}
