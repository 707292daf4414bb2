package work

import (
	"context"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// TestReconcileAfterSubmitsReadsOnlyNewJobs: after JobSubmitted the coordinator takes in the new
// jobs only (NewJobs: a job cancelled behind its back stays scheduled), and after JobsChanged it
// reads every unfinished job again (the cancelled one goes).
func TestReconcileAfterSubmitsReadsOnlyNewJobs(t *testing.T) {
	store := compute.NewJobStore(compute.NewMemResults())
	defer store.Close()
	co := NewCoordinator(CoordinatorConfig{Jobs: store, Logger: discardLogger()})
	c := co.newLeadership(context.Background(), 1, time.Second)
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 20, Seed: 1}}
	submit := func(id string) {
		t.Helper()
		if res := store.ApplyCommand(compute.Submit{ID: id, Spec: spec, Time: time.Now()}, 0); res != nil {
			t.Fatal(res)
		}
		co.JobSubmitted()
	}
	scheduled := func(want ...string) {
		t.Helper()
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.jobs) != len(want) {
			t.Fatalf("scheduled %v, want %v", c.jobs, want)
		}
		for _, id := range want {
			if !c.jobs[id] {
				t.Fatalf("scheduled %v, want %v", c.jobs, want)
			}
		}
	}
	c.reconcile(time.Now())
	scheduled()
	submit("a")
	c.reconcileIfChanged(time.Now())
	scheduled("a")
	if res := store.ApplyCommand(compute.Cancel{Job: "a", Time: time.Now()}, 0); res != nil {
		t.Fatal(res)
	}
	submit("b")
	submit("c")
	c.reconcileIfChanged(time.Now())
	scheduled("a", "b", "c") // only the new jobs were read: a's cancel is not seen yet
	if c.lastSeq != 3 {
		t.Fatalf("newest job number %d, want 3", c.lastSeq)
	}
	co.JobsChanged()
	c.reconcileIfChanged(time.Now())
	scheduled("b", "c")
	c.reconcileIfChanged(time.Now()) // nothing changed: nothing to do
	scheduled("b", "c")
}
