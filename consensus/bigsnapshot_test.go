package consensus

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/resultstore"
)

var _ SnapshotCapturer = (*compute.JobStore)(nil) // the job state is streamed, not buffered

// bigJobs is the state size the snapshot tests use: 10,000 finished jobs.
const bigJobs = 10_000

func openJobs(t testing.TB, dir string) *compute.JobStore {
	t.Helper()
	results, err := resultstore.Open(filepath.Join(dir, "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	js := compute.NewJobStore(results)
	t.Cleanup(func() { js.Close() })
	return js
}

// bigName is a job name at its length limit: the largest job a submit
// makes is a finished one-chunk job with such a name.
var bigName = strings.Repeat("N", compute.MaxJobName)

// bigNode is the node that computed the seeded jobs' chunks, a peer ID as
// a real cluster records it.
const bigNode = "12D3KooWN6aQVRwWFyPDQJMEiQ3DsXwMszgGxkXzyjWXuu5nNrE5"

// bigMandel is the Mandelbrot job fillJobs makes: a 160×100 view near the
// set's edge in one chunk, its counts (about 10 KB deflated) in the result
// store.
var bigMandel = compute.MandelParams{CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.02, Width: 160, Height: 100, MaxIter: 2000}

// fillJobs applies count finished one-chunk jobs, each named at the name
// limit, to js, as a leader's log would: π jobs, and a Mandelbrot job
// (bigMandel) as every mandelEvery-th one when mandelEvery > 0.
func fillJobs(tb testing.TB, js *compute.JobStore, count, mandelEvery int) {
	tb.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mandelPayload []byte
	if mandelEvery > 0 {
		counts := make([]uint32, bigMandel.Width*bigMandel.Height)
		if err := compute.MandelRows(bigMandel, 0, bigMandel.Height, counts); err != nil {
			tb.Fatal(err)
		}
		mandelPayload = compute.EncodeMandelPayload(counts)
	}
	var items []compute.ChunkResult
	apply := func(cmd any) {
		if err, ok := js.ApplyCommand(cmd, 0).(error); ok {
			tb.Fatal(err)
		}
	}
	for i := range count {
		id := fmt.Sprintf("%016x", i)
		spec := compute.JobSpec{Kind: compute.KindPi, Name: bigName, Pi: &compute.PiParams{Samples: 64, Seed: uint64(i)}}
		res := compute.ChunkResult{Chunk: compute.Chunk{Job: id, Range: compute.Range{Start: 0, End: 64}}, Node: bigNode, ComputeSeconds: 0.1,
			Payload: compute.EncodePiPayload(compute.PiHits(uint64(i), 0, 64))}
		if mandelEvery > 0 && i%mandelEvery == mandelEvery-1 {
			p := bigMandel
			spec = compute.JobSpec{Kind: compute.KindMandelbrot, Name: bigName, Mandel: &p}
			res.Range.End, res.Payload = uint64(p.Height), mandelPayload
		}
		apply(compute.Submit{ID: id, Time: t0, Submitter: "node-1", Spec: spec})
		items = append(items, res)
		if len(items) == 500 || i == count-1 {
			apply(compute.Results{Time: t0.Add(time.Second), Items: items})
			items = nil
		}
	}
}

// seedJobs gives the node in dir a raft state as if it had led a cluster
// of itself alone through count finished jobs (fillJobs) and then taken a
// snapshot: the snapshot (written by the FSM as raft would) and the term,
// no log after it. Committing 10,000 jobs through raft would take a minute
// here.
func seedJobs(tb testing.TB, n *testNode, count, mandelEvery int) {
	tb.Helper()
	fillJobs(tb, n.cfg.App.(*compute.JobStore), count, mandelEvery)
	js := n.cfg.App.(*compute.JobStore)
	n.kill()
	st, err := openStores(n.dir, testLogger())
	if err != nil {
		tb.Fatal(err)
	}
	defer st.close()
	fsm := NewFSM(js)
	snap, err := fsm.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	defer snap.Release()
	id := n.h.ID().String()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	defer trans.Close()
	const index = 20_000
	sink, err := st.snaps.Create(raft.SnapshotVersionMax, index, 1, conf, 1, trans)
	if err != nil {
		tb.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		tb.Fatal(err)
	}
	if err := st.bolt.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		tb.Fatal(err)
	}
}

func finishedJobs(js *compute.JobStore) int {
	n := 0
	for _, j := range js.Jobs() {
		if j.State == compute.StateDone {
			n++
		}
	}
	return n
}

// Test_MultiNode_BigSnapshot: a node whose state is a snapshot of 10,000
// finished jobs (no log before it) restarts from it, and two new members
// get the state by snapshot installation (the log they would replay is
// gone); a member restarted later restores it from its own snapshot file.
func Test_MultiNode_BigSnapshot(t *testing.T) {
	t.Parallel()
	bigSnapshotCluster(t, bigJobs, 0)
}

// BenchmarkBigSnapshotCluster100k is Test_MultiNode_BigSnapshot at the
// largest max-jobs (consensus.MaxMaxJobs), one job in ten a Mandelbrot job
// with its counts in the result store; it logs the time of each step:
//
//	go test -run XXX -bench BigSnapshotCluster100k -benchtime 1x -timeout 30m ./consensus/
func BenchmarkBigSnapshotCluster100k(b *testing.B) {
	for b.Loop() {
		bigSnapshotCluster(b, MaxMaxJobs, 10)
	}
}

// bigSnapshotCluster runs Test_MultiNode_BigSnapshot with count jobs
// (fillJobs, with mandelEvery).
func bigSnapshotCluster(t testing.TB, count, mandelEvery int) {
	t.Helper()
	deadline := testDeadline * time.Duration(max(1, count/bigJobs))
	apps := map[string]*compute.JobStore{}
	withJobs := func(name string) func(c *Config) {
		return func(c *Config) {
			js := openJobs(t, t.TempDir())
			apps[name] = js
			c.App = js
		}
	}
	founder := newTestNode(t, "founder", "big", withJobs("founder"))
	start := time.Now()
	seedJobs(t, founder, count, mandelEvery)
	t.Logf("%d jobs applied and snapshotted in %v", count, time.Since(start).Round(time.Millisecond))

	fresh := openJobs(t, t.TempDir())
	founder.cfg.App, apps["founder"] = fresh, fresh
	start = time.Now()
	founder.open() // raft restores the snapshot into the fresh job state here
	if n := finishedJobs(fresh); n != count {
		t.Fatalf("restart restored %d finished jobs, want %d", n, count)
	}
	t.Logf("restart restored %d jobs in %v", count, time.Since(start).Round(time.Millisecond))

	nodes := []*testNode{founder,
		newTestNode(t, "j1", "big", withJobs("j1")), newTestNode(t, "j2", "big", withJobs("j2"))}
	connectAll(t, nodes)
	start = time.Now()
	for _, n := range nodes {
		n.run()
	}
	waitUntil(t, deadline, "new members have every job", func() error {
		for _, n := range nodes[1:] {
			if got := finishedJobs(apps[n.name]); got != count {
				return fmt.Errorf("%s: %d finished jobs", n.name, got)
			}
		}
		return nil
	})
	t.Logf("two new members got %d jobs in %v", count, time.Since(start).Round(time.Millisecond))

	// A restarted member: its own snapshot file.
	m := nodes[1]
	// Raft refuses a snapshot until the latest configuration entry is applied
	// (the second joiner's may still be in flight): retry until it takes one.
	waitUntil(t, deadline, "the member takes a snapshot", func() error {
		if err := m.r.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return err
		}
		return nil
	})
	m.kill()
	again := openJobs(t, t.TempDir())
	m.cfg.App = again
	m.open()
	if n := finishedJobs(again); n != count {
		t.Fatalf("restarted member restored %d finished jobs, want %d", n, count)
	}
	connectAll(t, nodes)
	m.run()
	waitUntil(t, deadline, "the restarted member is back", func() error {
		_, err := agreed(nodes)
		return err
	})
}
