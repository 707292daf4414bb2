package consensus

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"
)

// failoverRounds is how many leader kills BenchmarkFailover measures.
const failoverRounds = 10

// measureFailover builds a 5-node cluster with the LAN default multiplier,
// then kills the leader (host closed, raft stopped: no transfer) rounds
// times, measuring how long until every survivor names the same new leader
// (polled every 20ms). The killed node is restarted before the next round.
func measureFailover(tb testing.TB, rounds int) []time.Duration {
	nodes := startCluster(tb, 5, "failover", func(_ int, c *Config) { c.Multiplier = 1 })
	settle := func() *testNode { return settled(tb, nodes, 3, true) }
	var out []time.Duration
	for range rounds {
		leader := settle()
		start := time.Now()
		leader.kill()
		waitUntil(tb, testDeadline, "survivors agree on a new leader", func() error {
			var first string
			for _, n := range alive(nodes) {
				l, ok := n.r.Leader()
				if !ok || l == leader.h.ID() {
					return fmt.Errorf("%s has no new leader", n.name)
				}
				if first == "" {
					first = l.String()
				} else if l.String() != first {
					return errors.New("survivors disagree")
				}
			}
			return nil
		})
		out = append(out, time.Since(start))
		leader.restart(alive(nodes))
	}
	return out
}

func summarize(ds []time.Duration) (median, worst time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

// BenchmarkFailover reports the median and worst time from a leader's kill
// to the survivors agreeing on a new leader, over 10 kills of a 5-node
// cluster at multiplier 1 (run without -race for meaningful figures):
//
//	go test -run XXX -bench Failover -benchtime 1x ./consensus/
func BenchmarkFailover(b *testing.B) {
	for b.Loop() {
		ds := measureFailover(b, failoverRounds)
		median, worst := summarize(ds)
		b.ReportMetric(float64(median.Milliseconds()), "median-ms")
		b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
		b.Logf("failover over %d kills: median %s, worst %s, all %v", len(ds), median, worst, ds)
	}
}

// Test_NoFlapUnderLoad checks the LAN defaults against spurious elections:
// a 3-node cluster at multiplier 1 keeps its leader and term while every
// core is saturated by busy-looping processes of normal priority. It burns
// the machine's CPU for 20s, so it only runs when HYDRA_NOFLAP=1.
func Test_NoFlapUnderLoad(t *testing.T) {
	if os.Getenv("HYDRA_NOFLAP") != "1" {
		t.Skip("set HYDRA_NOFLAP=1 to saturate every core for 20s")
	}
	nodes := startCluster(t, 3, "noflap", func(_ int, c *Config) { c.Multiplier = 1 })
	leader := settled(t, nodes, 3, false)
	term := leader.r.Term()
	for range runtime.NumCPU() {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	end := time.After(20 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-end:
			t.Logf("leader %s kept term %d for 20s under load", leader.name, term)
			return
		case <-tick.C:
			for _, n := range nodes {
				if got := n.r.Term(); got != term {
					t.Fatalf("%s moved to term %d (was %d): spurious election under load", n.name, got, term)
				}
			}
		}
	}
}
