package webui

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// TestUIFakeCluster serves the UI over a synthetic cluster of 100 nodes running a π job of
// 20,000 chunks (15,000 at start, then 50 more a second), for scripts/ui-test --fake to
// measure how the page copes. It runs only with HYDRA_UI_FAKE_ADDR set (host:port), for
// HYDRA_UI_FAKE_SECONDS (default 60).
func TestUIFakeCluster(t *testing.T) {
	addr := os.Getenv("HYDRA_UI_FAKE_ADDR")
	if addr == "" {
		t.Skip("set HYDRA_UI_FAKE_ADDR to serve the UI over a fake 100-node cluster")
	}
	secs := 60
	fmt.Sscan(os.Getenv("HYDRA_UI_FAKE_SECONDS"), &secs)
	const nodes, chunks, unit = 100, 20000, 50_000_000
	b := newEvBackend()
	ids := make([]string, nodes)
	st := Status{Self: NodeRef{ID: "node-007", Name: "node-007"}, Cluster: "fake", Term: 1}
	for i := range nodes {
		ids[i] = fmt.Sprintf("node-%03d", i)
		role := RoleNonvoter
		if i < 3 {
			role = RoleVoter
		}
		st.Nodes = append(st.Nodes, NodeStatus{ID: ids[i], Name: ids[i], Role: role, Online: true, State: StateWorking, OS: "linux", Arch: "arm64", Cores: 4})
	}
	st.Leader, st.Nodes[0].Role = ids[0], RoleLeader
	start := time.Now()
	job := compute.Job{ID: "big", Name: "20k chunks", Kind: compute.KindPi, State: compute.StateRunning, SubmittedAt: start, StartedAt: start,
		TotalUnits: chunks * unit, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: chunks * unit}}}
	b.update(func(b *evBackend) { b.status = st; b.jobs = append(b.jobs, job) })
	seq := 0
	add := func(n int, now time.Time) {
		b.update(func(b *evBackend) {
			act := Activity{Term: 1, Leader: ids[0], At: now, Nodes: map[string]NodeActivity{}}
			for k := 0; k < n && seq < chunks; k++ {
				node := ids[seq%nodes]
				at := start.Add(time.Duration(seq) * 20 * time.Millisecond)
				if at.After(now) {
					at = now
				}
				b.chunks["big"] = append(b.chunks["big"], compute.ChunkRecord{Seq: uint64(seq),
					Range: compute.Range{Start: uint64(seq) * unit, End: uint64(seq+1) * unit}, Hits: unit * 7854 / 10000,
					Node: node, ComputeSeconds: 1 + float64(seq%7)/5, Committed: at})
				seq++
			}
			for i, id := range ids {
				act.Nodes[id] = NodeActivity{Rates: map[string]float64{"pi": 2e7 + float64(i)*1e5}}
				act.Leases = append(act.Leases, LeaseView{ID: uint64(seq*nodes + i), Node: id,
					Chunk: compute.Chunk{Job: "big", Range: compute.Range{Start: uint64(seq+i) * unit, End: uint64(seq+i+1) * unit}}, Issued: now.Add(-time.Second), Backup: i%40 == 0})
			}
			if now.Sub(b.act.At) >= time.Second { // the leader republishes about once a second
				b.act = act
			}
			b.jobs[0].DoneUnits = uint64(seq) * unit
			b.pi["big"] = compute.PiResult{Hits: uint64(seq) * unit * 7854 / 10000, Samples: uint64(seq) * unit}
			if seq >= chunks {
				b.jobs[0].State = compute.StateDone
			}
		})
	}
	add(15000, start.Add(300*time.Second))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: New(Config{Backend: b, Jobs: b})}
	go srv.Serve(ln)
	t.Logf("serving a fake 100-node cluster on http://%s/ for %d s", ln.Addr(), secs)
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	end := time.After(time.Duration(secs) * time.Second)
	for {
		select {
		case now := <-tk.C:
			add(5, now)
		case <-end:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			srv.Close()
			return
		}
	}
}
