package functions

import (
	"fmt"
	"hash/fnv"
	"slices"
)

// Traffic is how the requests of a function split between its live
// revisions: each target takes its weight over the sum of the weights. A
// rollout sets it in Status.Traffic; Status.TrafficTable gives the table a
// request is routed by.
type Traffic []TrafficTarget

// TrafficTarget is one revision's share of the traffic.
type TrafficTarget struct {
	Revision string `json:"revision"`
	Weight   int    `json:"weight"`
}

// validate reports what is wrong with a spec.traffic table.
func (t Traffic) validate(bad func(string, string, ...any)) {
	if t == nil {
		return
	}
	sum := 0
	for i, target := range t {
		field := fmt.Sprintf("spec.traffic[%d]", i)
		if target.Revision == "" {
			bad(field+".revision", "name a revision")
		}
		if slices.ContainsFunc(t[:i], func(other TrafficTarget) bool { return other.Revision == target.Revision }) {
			bad(field+".revision", "revision %q is named twice", target.Revision)
		}
		if target.Weight < 0 || target.Weight > 100 {
			bad(field+".weight", "must be between 0 and 100, got %d", target.Weight)
		}
		sum += target.Weight
	}
	if sum != 100 {
		bad("spec.traffic", "the weights must sum to 100, got %d", sum)
	}
}

// pin makes a spec.traffic table the status's: every revision it names
// must be live, and no rollout moves the weights it pins.
func (s *Status) pin(table Traffic) error {
	if table == nil {
		return nil
	}
	for i, target := range table {
		if _, live := s.FindRevision(target.Revision); !live {
			return fmt.Errorf("spec.traffic[%d].revision: no live revision %q (live: %s)", i, target.Revision, s.liveNames())
		}
	}
	s.Traffic = slices.Clone(table)
	if s.Rollout != nil && !s.Rollout.Done() {
		s.Rollout = nil // a new revision waits to be named
	}
	return nil
}

// RouteKeyHeader names the request header whose value keeps a caller on one
// revision while the weights do not move (a sticky route).
const RouteKeyHeader = "Sluice-Route-Key"

// Pick returns the revision a request goes to: with a key, the key's hash
// decides, so the same key reaches the same revision for as long as the
// weights stay; without one, u, uniform in [0, 1), does. A target of weight 0
// is never picked; an empty table, or one without weight, gives "".
func Pick(table Traffic, key string, u float64) string {
	total := 0
	for _, target := range table {
		total += max(target.Weight, 0)
	}
	if total == 0 {
		return ""
	}
	if key != "" {
		u = keyPoint(key)
	}
	point := int(u * float64(total))
	for _, target := range table {
		if point < max(target.Weight, 0) {
			return target.Revision
		}
		point -= max(target.Weight, 0)
	}
	return table[len(table)-1].Revision // u rounded up to 1
}

// keyPoint places a route key in [0, 1), the same in every process: FNV-1a,
// whose high bits barely move between similar keys, then splitmix64's
// finalizer to spread them.
func keyPoint(key string) float64 {
	hash := fnv.New64a()
	_, _ = hash.Write([]byte(key))
	x := hash.Sum64()
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// TrafficTable is the table requests without a version are routed by: the
// rollout's Status.Traffic without the revisions whose model cannot run or
// that are no longer live, and, when that leaves no weight, the revision
// Serving gives, alone.
func (s Status) TrafficTable() Traffic {
	table := slices.DeleteFunc(slices.Clone(s.Traffic), func(target TrafficTarget) bool {
		revision, live := s.FindRevision(target.Revision)
		return !live || revision.State == RevisionFailed || target.Weight <= 0
	})
	if len(table) > 0 {
		return table
	}
	serving, err := s.Serving("")
	if err != nil {
		return nil
	}
	return Traffic{{Revision: serving.Name, Weight: 100}}
}

// Route is the one routing decision of a request: the named version if one
// is asked for (as Serving gives it), else the revision Pick draws from the
// traffic table with key and u. It fails as Serving does when no revision
// can take the request.
func (s Status) Route(version, key string, u float64) (RevisionStatus, error) {
	if version != "" {
		return s.Serving(version)
	}
	picked := Pick(s.TrafficTable(), key, u)
	if revision, ok := s.FindRevision(picked); ok {
		return revision, nil
	}
	return s.Serving("") // says why no revision serves
}

// Primary is the revision that takes the most traffic, the one most
// answers come from: after a rollback, the stable revision, not the newest.
func (s Status) Primary() (RevisionStatus, bool) {
	table := s.TrafficTable()
	if len(table) == 0 {
		return RevisionStatus{}, false
	}
	heaviest := table[0]
	for _, target := range table[1:] {
		if target.Weight > heaviest.Weight {
			heaviest = target
		}
	}
	return s.FindRevision(heaviest.Revision)
}

// Serves lists the revisions that take requests without a version, as
// scaling sees them: those of the traffic table, and, while a rollout runs,
// its stable revision even at weight 0, ready to take back every request,
// and its candidate in shadow, which answers copies.
func (s Status) Serves() []string {
	var names []string
	for _, target := range s.TrafficTable() {
		names = append(names, target.Revision)
	}
	if r := s.Rollout; r != nil && !r.Done() {
		for _, name := range []string{r.Stable, r.Candidate} {
			if _, live := s.FindRevision(name); live && !slices.Contains(names, name) && (name == r.Stable || r.Shadowing) {
				names = append(names, name)
			}
		}
	}
	return names
}

// Shadow is the revision that gets a copy of the requests routed to
// revision, when a rollout in shadow says so.
func (s Status) Shadow(revision string) (RevisionStatus, bool) {
	r := s.Rollout
	if r == nil || r.Done() || !r.Shadowing || r.Stable != revision {
		return RevisionStatus{}, false
	}
	candidate, live := s.FindRevision(r.Candidate)
	return candidate, live && candidate.State != RevisionFailed
}

// Guards says whether revision is the stable revision or the candidate of
// a rollout that runs: each keeps a replica — the stable one ready for the
// requests its candidate fails, the candidate so that its gates judge its
// answers, not its cold starts.
func (s Status) Guards(revision string) bool {
	return s.Rollout != nil && !s.Rollout.Done() && (s.Rollout.Stable == revision || s.Rollout.Candidate == revision)
}
