package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/owner"
)

// fakeMachine is a sysfs/procfs tree the owner sensors read: a laptop on
// mains power with an idle CPU, whose battery state a test flips.
type fakeMachine struct{ sys, proc string }

func newFakeMachine(t *testing.T) fakeMachine {
	t.Helper()
	m := fakeMachine{sys: t.TempDir(), proc: t.TempDir()}
	m.write(t, m.proc, "stat", "cpu  100 0 100 100000 0 0 0 0 0 0\n")
	m.write(t, m.sys, "class/power_supply/AC/type", "Mains\n")
	m.write(t, m.sys, "class/power_supply/BAT0/type", "Battery\n")
	m.write(t, m.sys, "class/power_supply/BAT0/capacity", "80\n")
	m.setBattery(t, false)
	return m
}

func (m fakeMachine) write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func (m fakeMachine) setBattery(t *testing.T, onBattery bool) {
	status, online := "Charging\n", "1\n"
	if onBattery {
		status, online = "Discharging\n", "0\n"
	}
	m.write(t, m.sys, "class/power_supply/BAT0/status", status)
	m.write(t, m.sys, "class/power_supply/AC/online", online)
}

func TestOwner_BatteryPausesNodeWorkFinishedExactly(t *testing.T) {
	laptop := newFakeMachine(t)
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, newTestNode(t, t.TempDir(), fmt.Sprintf("n%d", i), func(c *Config) {
			if i == 2 {
				c.Owner.Dedicated = false
				c.Owner.IdleAfter = 0
				c.Owner.ResumeAfter = time.Hour
				c.SysRoot, c.ProcRoot = laptop.sys, laptop.proc
			}
		}))
	}
	connectAll(t, nodes)
	for _, n := range nodes {
		n.start(t)
	}
	waitFor(t, 20*time.Second, "leader", func() error { _, err := agreedLeader(nodes); return err })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const samples, seed = 1_500_000_000, 5
	j, err := nodes[0].SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: samples, Seed: seed}})
	if err != nil {
		t.Fatal(err)
	}
	laptopID := nodes[2].ID().String()
	laptopUnits := func() uint64 { // the laptop's accepted units, in nodes[0]'s replica
		v, _ := nodes[0].Job(j.ID)
		for _, c := range v.Nodes {
			if c.Node == laptopID {
				return c.Units
			}
		}
		return 0
	}
	// Unplug once the laptop computes and has handed in work, so that there is something the
	// pause must not lose. A chunk in hand alone may have nothing finished yet: the compute
	// child runs at idle priority, and on a busy machine it may wait a second or more for the
	// CPU (docs/design.md §7), longer than the pause takes to come.
	var before uint64
	waitFor(t, 60*time.Second, "the laptop computing, with accepted units", func() error {
		if v, _ := nodes[0].Job(j.ID); v.State == compute.StateDone {
			t.Fatal("the job finished before the laptop could be unplugged: make it bigger")
		}
		if nodes[2].workState() != "working" {
			return errors.New("not working yet")
		}
		if before = laptopUnits(); before == 0 {
			return errors.New("no units of the laptop accepted yet")
		}
		return nil
	})
	laptop.setBattery(t, true)
	unplugged := time.Now()
	waitFor(t, 10*time.Second, "the laptop paused", func() error {
		if d := nodes[2].owner.get(); d.State != owner.StatePaused || d.Reason != owner.ReasonOnBattery {
			return fmt.Errorf("decision %v", d)
		}
		if nodes[2].runner.Paused() && nodes[2].workState() == "paused" {
			return nil
		}
		return errors.New("compute not paused")
	})
	pausedSeen := time.Now()
	t.Logf("paused %s after the unplug (pause-after %s)", pausedSeen.Sub(unplugged).Round(time.Millisecond), nodes[2].cfg.Owner.PauseAfter)
	// The reason is in /metrics too (as in hydra status), and the format passes promtool.
	if body := checkMetrics(t, nodes[2].HTTPURL()+"/metrics"); !strings.Contains(body, `hydra_node_state_reason{reason="on battery",state="paused"} 1`) {
		t.Errorf("/metrics of the paused laptop has no reason:\n%s", grepLines(body, "hydra_node_state"))
	}
	// Every node, not just one: PiResult reads the local replica, which
	// may apply the last commit a little after the others.
	waitFor(t, 300*time.Second, "job done on every node", func() error {
		for _, n := range nodes {
			v, _ := n.Job(j.ID)
			if v.State != compute.StateDone {
				return fmt.Errorf("%s sees %s %d/%d", n.cfg.Name, v.State, v.DoneUnits, v.TotalUnits)
			}
		}
		return nil
	})
	r, err := nodes[1].PiResult(j.ID)
	if err != nil || r.Hits != compute.PiHits(seed, 0, samples) {
		t.Fatalf("hits %d (%v), want %d", r.Hits, err, compute.PiHits(seed, 0, samples))
	}
	// Everything the laptop computed before the pause was handed in and
	// kept: its share is in the job, and after the pause it took no chunk.
	if after := laptopUnits(); after == 0 || after < before {
		t.Fatalf("the laptop's accepted units went from %d before the unplug to %d: its work before the pause was lost", before, after)
	}
	page, err := nodes[0].Chunks(j.ID, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for _, c := range page.Records {
		if c.Node == laptopID && c.Committed.After(last) {
			last = c.Committed
		}
	}
	// Measured from when the test saw the pause, not from the unplug: the
	// wait for the pause above may itself take up to 10 s on a loaded
	// machine. The 5 s are for the hand-in of the finished prefix.
	if last.After(pausedSeen.Add(5 * time.Second)) {
		t.Fatalf("the paused laptop still had chunks committed %s after the pause was seen (%s after the unplug)", last.Sub(pausedSeen), last.Sub(unplugged))
	}
}

// With --voter auto, a voter that goes on battery gives its vote to a
// mains-powered node, and a leader hands over leadership first; the
// cluster keeps its three voters throughout.
func TestOwner_BatteryMovesVoteAndLeadership(t *testing.T) {
	machines := map[string]fakeMachine{}
	var nodes []*testNode
	for i := range 4 {
		m := newFakeMachine(t)
		n := newTestNode(t, t.TempDir(), fmt.Sprintf("n%d", i), func(c *Config) {
			c.SysRoot, c.ProcRoot = m.sys, m.proc
		})
		machines[n.ID().String()] = m
		nodes = append(nodes, n)
	}
	connectAll(t, nodes)
	for _, n := range nodes {
		n.start(t)
	}
	var leader string
	waitFor(t, 30*time.Second, "a leader with 3 voters of 4 servers", func() error {
		ln, err := leaderIn(nodes)
		if err != nil {
			return err
		}
		l := ln.ID().String()
		if got := len(ln.Raft().Servers()); got != 4 {
			return fmt.Errorf("%d servers", got)
		}
		leader = l
		return wantVoters(ln, 3)
	})
	machines[leader].setBattery(t, true)
	unplugged := time.Now()
	waitFor(t, 30*time.Second, "leadership and the vote moved off the laptop", func() error {
		ln, err := leaderIn(nodes)
		if err != nil {
			return err
		}
		if ln.ID().String() == leader {
			return errors.New("the laptop still leads")
		}
		for _, s := range ln.Raft().Servers() {
			if s.ID.String() == leader && s.Voter {
				return errors.New("the laptop still votes")
			}
		}
		return wantVoters(ln, 3)
	})
	t.Logf("vote and leadership moved %s after the unplug", time.Since(unplugged).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "the others' status says the laptop is on battery", func() error {
		for _, n := range nodes {
			st, err := getStatus(n)
			if err != nil {
				return err
			}
			for _, ns := range st.Nodes {
				if want := map[bool]string{true: "battery", false: "mains"}[ns.ID == leader]; ns.Power != want {
					return fmt.Errorf("%s says %s has power %q, want %q", n.cfg.Name, ns.Name, ns.Power, want)
				}
			}
		}
		return nil
	})
}

// A graceful stop (SIGTERM) of a one-node cluster hands in the finished
// prefix of the chunk in hand before the coordinator stops: the restarted
// node has it accepted. (The coordinator used to stop with the signal, so
// the final hand-in found no coordinator and the prefix was lost.)
func TestStop_HandsInThePrefixOnTheLeader(t *testing.T) {
	dir := t.TempDir()
	n := newTestNode(t, dir, "solo", nil)
	n.start(t)
	waitFor(t, 20*time.Second, "leader", func() error { _, err := agreedLeader([]*testNode{n}); return err })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := n.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 40, Seed: 9}})
	if err != nil {
		t.Fatal(err)
	}
	var inHand compute.Range
	waitFor(t, 60*time.Second, "a chunk in hand with progress", func() error {
		r, done, ok := n.worker.InHand()
		if !ok || done == 0 {
			return errors.New("not computing yet")
		}
		inHand = r
		return nil
	})
	n.stop(t)
	again := newTestNode(t, dir, "solo", func(c *Config) { c.Compute = false })
	again.start(t)
	waitFor(t, 20*time.Second, "leader after the restart", func() error { _, err := agreedLeader([]*testNode{again}); return err })
	// Leadership comes before the log is applied: wait for the job to be back.
	var acc []compute.Range
	waitFor(t, 20*time.Second, "the job applied after the restart", func() (err error) {
		acc, err = again.AcceptedRanges(j.ID)
		return err
	})
	set := compute.NewRangeSet(acc...)
	if !set.Covers(compute.Range{Start: inHand.Start, End: inHand.Start + 1}) {
		t.Fatalf("the prefix of the chunk in hand %v was lost by a graceful stop; accepted %v", inHand, acc)
	}
	t.Logf("chunk in hand %v; accepted after the restart: %v", inHand, acc)
}
