package compute

import (
	"cmp"
	"slices"
)

// NodeWork sums each node's contribution (units, chunks, compute seconds) over every job the
// state holds, finished ones included, by node ID. It is what a cluster view shows as a node's
// work done: the event stream lists only the newest jobs, so summing the listed jobs' views
// would count less and less of a long-lived cluster's work. It reads the jobs in batches, as
// Jobs does, and costs a walk of every job's nodes: callers pace it (the event stream asks at
// most every 2 s, and only when a job changed).
func (s *JobStore) NodeWork() []NodeContribution {
	sums := map[string]*NodeContribution{}
	s.inBatches(s.jobsInOrder(), func(j *job) {
		for _, n := range j.nodes {
			w := sums[n.Node]
			if w == nil {
				w = &NodeContribution{Node: n.Node}
				sums[n.Node] = w
			}
			w.Units += n.Units
			w.Chunks += n.Chunks
			w.ComputeSeconds += n.ComputeSeconds
		}
	})
	out := make([]NodeContribution, 0, len(sums))
	for _, w := range sums {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b NodeContribution) int { return cmp.Compare(a.Node, b.Node) })
	return out
}
