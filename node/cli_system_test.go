//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// The user-facing commands that stop, remove and recover nodes, run as a
// user would: `hydra …` against real node processes.

// hydraCLI runs the hydra binary with args and returns its combined output.
func hydraCLI(t *testing.T, limit time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, hydraBinary(t), args...)
	cmd.Env = append(os.Environ(), compute.KernelsEnv+"=portable") // as startProc's nodes
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// logTime returns the time of the first line of p's log whose message is
// msg (zero if none).
func logTime(t *testing.T, p *proc, msg string) time.Time {
	t.Helper()
	for _, l := range readNodeLog(t, p) {
		if l.msg == msg {
			return l.at
		}
	}
	return time.Time{}
}

// sigtermMidWork waits until p computes a chunk of job id (and the job is not done), sends
// it SIGTERM, and waits at most 20 s for it to exit with code 0: a node always stops, and
// stops cleanly, whatever it is doing. It returns when the signal was sent.
func sigtermMidWork(t *testing.T, p *proc, ps []*proc, id string) time.Time {
	t.Helper()
	waitFor(t, 60*time.Second, p.name+" computing a chunk", func() error {
		ns, err := selfState(p)
		if err != nil {
			return err
		}
		if ns.State != webui.StateWorking {
			return fmt.Errorf("%s %s %s", p.name, ns.State, ns.Reason)
		}
		return nil
	})
	for _, q := range alive(ps) {
		if j, err := jobOn(q, id); err == nil && j.State == compute.StateDone {
			t.Fatalf("the job finished before %s was stopped: make it bigger", p.name)
		}
	}
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	const bound = 20 * time.Second
	select {
	case <-p.exited:
	case <-time.After(bound):
		// The goroutines it waits for, to read in the log (a Go process dumps them on SIGQUIT).
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		<-p.exited
		t.Fatalf("%s did not exit within %v of SIGTERM", p.name, bound)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %d after SIGTERM, want 0", p.name, code)
	}
	if logTime(t, p, "node stopped").IsZero() {
		t.Fatalf(`%s did not log "node stopped"`, p.name)
	}
	t.Logf("%s exited 0 %v after SIGTERM", p.name, time.Since(sent).Round(time.Millisecond))
	return sent
}

// A node stopped with SIGTERM while it computes exits within 20 s with code 0, leader or
// follower, and the others finish the job exactly. The leader goes first, and hands
// leadership to another voter before it exits: the survivor it picks starts its election
// (raft's timeout-now) no later than the old leader logs that it stopped — an election after a
// lost leader would start only after a heartbeat timeout — and that survivor becomes leader.
// The old leader is started again (a graceful stop keeps it a member), then a follower is
// stopped mid-work, and the two left finish the job.
func TestSystem_SIGTERMLeaderHandsOver(t *testing.T) {
	ps, token := startProcCluster(t, 3, nil)
	const samples, seed uint64 = 5_000_000_000, 11
	id := submitJob(t, ps[0], token, map[string]any{"kind": "pi", "samples": samples, "seed": seed})
	leader := leaderOf(t, ps)
	sent := sigtermMidWork(t, leader, ps, id)
	stopped := logTime(t, leader, "node stopped")
	var cand, first time.Time
	var who string
	from := sent.Truncate(time.Millisecond) // log times are in ms: the hand-over comes within a few of SIGTERM
	for _, p := range alive(ps) {
		for _, l := range readNodeLog(t, p) {
			if l.at.Before(from) {
				continue
			}
			if l.msg == "entering candidate state" && (cand.IsZero() || l.at.Before(cand)) {
				cand, who = l.at, p.name
			}
			if l.msg == "entering leader state" && (first.IsZero() || l.at.Before(first)) {
				first = l.at
			}
		}
	}
	if cand.IsZero() || cand.After(stopped) { // log times are in ms: the same ms is in time
		t.Fatalf("no survivor started an election before the old leader stopped (stopped %s, first candidate %s %s)",
			stopped.Format(time.StampMilli), who, cand.Format(time.StampMilli))
	}
	next := leaderOf(t, alive(ps)) // and a survivor leads
	t.Logf("%s stood for election %v after SIGTERM, %v before the old leader stopped; first new leader logged %s",
		who, cand.Sub(sent).Round(time.Millisecond), stopped.Sub(cand).Round(time.Millisecond), first.Format(time.StampMilli))

	leader.start()
	var follower *proc
	for _, p := range alive(ps, leader) {
		if p != next {
			follower = p
		}
	}
	sigtermMidWork(t, follower, ps, id)
	waitDone(t, alive(ps), id, 300*time.Second)
	checkPiExact(t, ps, id, seed, samples)
}

// `hydra leave` removes a node from the cluster for good and stops it; its
// raft state is gone and the others list it no more.
func TestSystem_CLILeave(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, _ := startProcCluster(t, 4, nil)
	leader := leaderOf(t, ps)
	var leaver *proc
	for _, p := range ps {
		if p != leader {
			leaver = p
		}
	}
	waitFor(t, 10*time.Second, "the leaver's API token", func() error {
		_, tok, err := ReadLocal(leaver.dir)
		if err == nil && tok == "" {
			err = errors.New("no token yet")
		}
		return err
	})
	out, err := hydraCLI(t, 60*time.Second, "leave", "--data", leaver.dir)
	if err != nil {
		t.Fatalf("hydra leave: %v\n%s", err, out)
	}
	if !strings.Contains(out, "removed from the cluster") {
		t.Fatalf("hydra leave said %q", out)
	}
	select {
	case <-leaver.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not stop after hydra leave")
	}
	if _, err := os.Stat(filepath.Join(leaver.dir, "raft", "raft.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("raft state still there after leave: %v", err)
	}
	waitFor(t, 30*time.Second, "the others no longer list the leaver as a member", func() error {
		for _, p := range alive(ps) {
			st, err := p.status()
			if err != nil {
				return err
			}
			members := 0
			for _, n := range st.Nodes {
				if n.ID == leaver.id && n.Role != webui.RoleNone {
					return fmt.Errorf("%s still lists %s as %s", p.name, leaver.name, n.Role)
				}
				if n.Role != webui.RoleNone {
					members++
				}
			}
			if members != 3 {
				return fmt.Errorf("%s lists %d members", p.name, members)
			}
		}
		return nil
	})
}

// `hydra recover`: two of three voters are lost for good; the survivor is
// stopped, recovered as the only voter, started again, and leads with the
// state it had (the job submitted before is still there).
func TestSystem_CLIRecover(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 3, nil)
	id := submitJob(t, ps[0], token, map[string]any{"kind": "pi", "samples": 1000, "seed": 1})
	waitDone(t, ps, id, 60*time.Second)
	st, err := ps[0].status()
	if err != nil {
		t.Fatal(err)
	}
	cid := st.ClusterID
	survivor := ps[0]
	for _, p := range ps[1:] {
		p.kill()
	}
	waitFor(t, 30*time.Second, "the survivor has no leader", func() error {
		st, err := survivor.status()
		if err != nil {
			return err
		}
		if st.Leader != "" && st.Leader != survivor.id {
			return fmt.Errorf("still follows %s", st.Leader)
		}
		if st.Leader == survivor.id {
			return errors.New("still leads")
		}
		return nil
	})
	survivor.kill()
	if out, err := hydraCLI(t, 30*time.Second, "recover", "--data", survivor.dir+"/nonexistent"); err == nil {
		t.Fatalf("hydra recover on an empty data directory succeeded:\n%s", out)
	}
	out, err := hydraCLI(t, 60*time.Second, "recover", "--data", survivor.dir)
	if err != nil {
		t.Fatalf("hydra recover: %v\n%s", err, out)
	}
	if !strings.Contains(out, "recovered "+survivor.id) {
		t.Fatalf("hydra recover said %q", out)
	}
	survivor.start()
	waitFor(t, 60*time.Second, "the survivor leads its cluster alone, with its jobs", func() error {
		st, err := survivor.status()
		if err != nil {
			return err
		}
		if st.Leader != survivor.id || st.ClusterID != cid {
			return fmt.Errorf("leader %q cluster %q", st.Leader, st.ClusterID)
		}
		j, err := jobOn(survivor, id)
		if err != nil {
			return err
		}
		if j.State != "done" {
			return fmt.Errorf("job %s", j.State)
		}
		return nil
	})
}

// `hydra demo` with small jobs: a cluster of real processes, the
// coordinator SIGKILLed midway, exact results and a picture.
func TestSystem_Demo(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	dir := t.TempDir()
	pic := filepath.Join(dir, "demo.png")
	out, err := hydraCLI(t, 5*time.Minute, "demo", "--nodes", "3", "--samples", "1e9", "--width", "160", "--dir", filepath.Join(dir, "nodes"), "-o", pic)
	if err != nil {
		t.Fatalf("hydra demo: %v\n%s", err, out)
	}
	for _, want := range []string{"Cluster formed: 3 nodes", "SIGKILL the coordinator", "New coordinator", "π ≈ 3.14", "Mandelbrot written to"} {
		if !strings.Contains(out, want) {
			t.Fatalf("hydra demo output lacks %q:\n%s", want, out)
		}
	}
	f, err := os.Open(pic)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 160 || b.Dy() != 90 {
		t.Fatalf("picture is %v, want 160×90", b)
	}
}

// A node restarted alone (its peers down: no leader can be known) serves
// the jobs and results it had before it stopped, from its own disk: the job
// list, the job and its exact result.
func TestSystem_RestartAloneServesResults(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 3, nil)
	id := submitJob(t, ps[0], token, map[string]any{"kind": "pi", "samples": 20_000_000, "seed": 3})
	waitDone(t, ps, id, 120*time.Second)
	result := func(p *proc) (map[string]any, error) {
		var r map[string]any
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id+"/result", nil, &r)
		return r, err
	}
	want, err := result(ps[1])
	if err != nil || want["complete"] != true {
		t.Fatalf("result before the restart: %v %v", want, err)
	}
	for _, p := range ps {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-p.exited
	}

	alone := ps[1]
	alone.start()
	waitFor(t, 60*time.Second, "the restarted node answers", func() error {
		_, err := alone.status()
		return err
	})
	var list []jobInfo
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = alone.client("").Do(ctx, "GET", "/api/v1/jobs", nil, &list)
	cancel()
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].State != compute.StateDone {
		t.Fatalf("job list of the node restarted alone: %+v %v, want job %s done", list, err, id)
	}
	got, err := result(alone)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("result on the node restarted alone: %v %v, want %v", got, err, want)
	}
	if st, err := alone.status(); err != nil || st.Leader != "" {
		t.Fatalf("status of the node alone: leader %q (%v), want none known", st.Leader, err)
	}
}
