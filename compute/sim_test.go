package compute

import (
	"testing"
	"time"
)

// TestSimulate1000Nodes: 1,000 nodes with speeds spread 20:1, 10 % leaving mid-job, under the
// real policy with a virtual clock. Goal: efficiency ≥ 0.97.
func TestSimulate1000Nodes(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	rep := Simulate(SimConfig{Nodes: 1000, SlowestRate: 5e6, SpeedSpread: 20, LeaveFraction: 0.10, Seed: 1})
	t.Logf("makespan %v, efficiency %.4f (%.4f counting leavers' rates for the whole makespan), leases %d (backups %d, expired %d, requeued %d, cancelled %d), lost %.2f%% of units",
		rep.Makespan.Round(time.Millisecond), rep.Efficiency, rep.EfficiencyAll, rep.Leases, rep.Backups, rep.Expired, rep.Requeued, rep.Cancelled,
		100*float64(rep.LostUnits)/float64(rep.Units))
	if rep.Efficiency < 0.97 {
		t.Errorf("efficiency %.4f < 0.97", rep.Efficiency)
	}
}

// BenchmarkSchedulerChunk measures the coordinator's CPU per chunk: one Lease plus one Complete
// with 1,000 nodes holding leases (ns/op is per chunk).
func BenchmarkSchedulerChunk(b *testing.B) {
	s := NewScheduler(SchedulerConfig{})
	if err := s.AddJob("j", JobSpec{Kind: KindPi, Pi: &PiParams{Samples: MaxPiSamples}}, []Range{{0, MaxPiSamples}}, true); err != nil {
		b.Fatal(err)
	}
	now := time.Unix(0, 0)
	const nodes = 1000
	names := make([]string, nodes)
	held := make([]uint64, nodes)
	for i := range names {
		names[i] = "node-" + itoa(i)
		l, _ := s.Lease(names[i], now)
		held[i] = l.ID
	}
	i := 0
	for b.Loop() {
		now = now.Add(2 * time.Millisecond)
		k := i % nodes
		s.Complete(held[k], now)
		l, ok := s.Lease(names[k], now)
		if !ok {
			b.Fatal("no lease")
		}
		held[k] = l.ID
		i++
	}
}

// BenchmarkSimulate reports the simulator's cost and the policy's figures.
func BenchmarkSimulate(b *testing.B) {
	var rep SimReport
	for b.Loop() {
		rep = Simulate(SimConfig{Nodes: 1000, SlowestRate: 5e6, SpeedSpread: 20, LeaveFraction: 0.10, Seed: 1})
	}
	b.ReportMetric(rep.Efficiency, "efficiency")
	b.ReportMetric(float64(rep.Leases), "leases")
}
