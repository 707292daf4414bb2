//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/owner"
	"github.com/hydra-compute/hydra/webui"
)

// Real-process tests of the owner policy (docs/design.md §7): `hydra node`
// processes whose sensors read a fake sysfs tree (battery) or the real
// /proc (a CPU hog started beside them). They check what the in-process
// TestOwner_BatteryPausesNodeWorkFinishedExactly cannot: the flags, the
// status a user sees, and — from the nodes' own logs — that a pause loses
// no computed sample and makes no one compute one again. Linux only: the
// sensors read procfs and sysfs.

// cpuHogEnv makes the test binary a CPU-hungry "owner" program instead of
// running tests: runtime.NumCPU() busy goroutines at normal priority until
// it is killed. init dispatches it, before TestMain and the testing
// package's flags, so that main_test.go need not know about it.
const cpuHogEnv = "HYDRA_TEST_CPU_HOG"

func init() {
	if os.Getenv(cpuHogEnv) == "1" {
		for range runtime.NumCPU() - 1 {
			go spin()
		}
		spin()
	}
}

var spinSink uint64

func spin() {
	x := uint64(1)
	for i := int64(0); ; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		if i == 1<<62 {
			spinSink = x // never: keeps the loop's work from being optimised away
		}
	}
}

// startCPUHog starts the test binary as a CPU hog beside the nodes; the
// returned function (also run at cleanup, so a failing test never leaves
// it spinning) SIGKILLs and reaps it and reports when it was killed.
func startCPUHog(t *testing.T) (kill func() time.Time) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), cpuHogEnv+"=1")
	// Pdeathsig: the hog dies with the test binary even if it crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var killed time.Time
	kill = func() time.Time {
		once.Do(func() {
			_ = cmd.Process.Kill()
			killed = time.Now()
			_ = cmd.Wait()
		})
		return killed
	}
	t.Cleanup(func() { kill() })
	return kill
}

// rangesLogged returns, per node name, the [a,b) ranges each node logged as
// computed for job.
func rangesLogged(t *testing.T, ps []*proc, job string) map[string][]compute.Range {
	t.Helper()
	out := map[string][]compute.Range{}
	for _, p := range ps {
		for _, c := range chunksLogged(t, p, job) {
			out[p.name] = append(out[p.name], c.r)
		}
	}
	return out
}

// ownerDecision is an "owner policy decision" line of a node's log.
type ownerDecision struct {
	at            time.Time
	state, reason string
}

func ownerDecisions(t *testing.T, p *proc) []ownerDecision {
	t.Helper()
	var out []ownerDecision
	for _, l := range readNodeLog(t, p) {
		if l.msg == "owner policy decision" {
			out = append(out, ownerDecision{at: l.at, state: l.attr("state"), reason: l.attr("reason")})
		}
	}
	return out
}

// firstDecision returns the first decision logged after since that
// satisfies ok.
func firstDecision(t *testing.T, p *proc, since time.Time, ok func(ownerDecision) bool) (ownerDecision, bool) {
	t.Helper()
	for _, d := range ownerDecisions(t, p) {
		if !d.at.Before(since) && ok(d) {
			return d, true
		}
	}
	return ownerDecision{}, false
}

// selfState is what p's own status says about p.
func selfState(p *proc) (webui.NodeStatus, error) {
	st, err := p.status()
	if err != nil {
		return webui.NodeStatus{}, err
	}
	for _, n := range st.Nodes {
		if n.ID == st.Self.ID {
			return n, nil
		}
	}
	return webui.NodeStatus{}, errors.New("no entry for itself in its status")
}

// jobContrib is a job as the API shows it, with what each node did.
type jobContrib struct {
	jobInfo
	Nodes []compute.NodeContribution `json:"nodes"`
}

func (j jobContrib) unitsOf(nodeID string) uint64 {
	for _, c := range j.Nodes {
		if c.Node == nodeID {
			return c.Units
		}
	}
	return 0
}

func jobContribOn(p *proc, id string) (jobContrib, error) {
	var j jobContrib
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id, nil, &j)
	return j, err
}

// waitDoneOrStalled waits for the job to be done on every live node, and
// fails early, naming the ranges no node has logged as computed, when its
// progress stands still for a while: a range lost between a pause and the
// scheduler would otherwise show only as a timeout.
func waitDoneOrStalled(t *testing.T, ps []*proc, id string, samples uint64) {
	t.Helper()
	const stall = 30 * time.Second
	var last uint64
	lastMoved := time.Now()
	waitFor(t, 180*time.Second, "job "+id+" done on every live node", func() error {
		for _, p := range alive(ps) {
			j, err := jobOn(p, id)
			if err != nil {
				return err
			}
			if j.State != compute.StateDone {
				if j.DoneUnits != last {
					last, lastMoved = j.DoneUnits, time.Now()
				} else if time.Since(lastMoved) > stall {
					var computed compute.RangeSet
					for _, rs := range rangesLogged(t, ps, id) {
						for _, r := range rs {
							computed.Add(r)
						}
					}
					missing := computed.Complement(compute.Range{Start: 0, End: samples})
					t.Fatalf("job stalled at %d of %d units for %s; computed by no node: %v", j.DoneUnits, j.TotalUnits, stall, missing.Ranges())
				}
				return fmt.Errorf("%s sees %s %d/%d", p.name, j.State, j.DoneUnits, j.TotalUnits)
			}
		}
		return nil
	})
}

// overlap is the number of units two ranges share.
func overlap(a, b compute.Range) uint64 {
	lo, hi := max(a.Start, b.Start), min(a.End, b.End)
	if hi <= lo {
		return 0
	}
	return hi - lo
}

func TestSystem_OwnerBatteryPause(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	// n2 is a laptop on mains power, as a fake sysfs tree tells its
	// sensors; the others are dedicated (startProc's default). The laptop
	// ignores CPU load (--max-owner-cpu 100 disables the rule, so the load
	// of other test packages cannot pause it) and input, never resumes
	// within the test, and reads no real thermal zone (the fake tree has
	// none).
	const laptopIdx = 2
	const pauseAfter = time.Second
	machine := newFakeMachine(t)
	ps, token := startProcCluster(t, 3, func(i int) []string {
		if i != laptopIdx {
			return nil
		}
		return []string{"--dedicated=false", "--idle-after", "0", "--max-owner-cpu", "100",
			"--pause-after", pauseAfter.String(), "--resume-after", "1h", "--sys-root", machine.sys}
	})
	laptop := ps[laptopIdx]
	const samples, seed uint64 = 5_000_000_000, 13
	id := submitJob(t, ps[0], token, map[string]any{"kind": "pi", "samples": samples, "seed": seed})

	// Unplug once the laptop computes and has handed in work, so that
	// there is something the pause must not lose.
	var before uint64
	waitFor(t, 60*time.Second, "the laptop working, with accepted units", func() error {
		ns, err := selfState(laptop)
		if err != nil {
			return err
		}
		if ns.State != webui.StateWorking {
			return fmt.Errorf("laptop %s %s", ns.State, ns.Reason)
		}
		j, err := jobContribOn(ps[0], id)
		if err != nil {
			return err
		}
		if j.State == compute.StateDone {
			t.Fatal("the job finished before the laptop could be unplugged: make it bigger")
		}
		if before = j.unitsOf(laptop.id); before == 0 {
			return errors.New("no units of the laptop accepted yet")
		}
		return nil
	})
	machine.setBattery(t, true)
	unplugged := time.Now()
	waitFor(t, 10*time.Second, "the laptop paused: on battery", func() error {
		ns, err := selfState(laptop)
		if err != nil {
			return err
		}
		if ns.State != webui.StatePaused || ns.Reason != owner.ReasonOnBattery {
			return fmt.Errorf("laptop %s %q", ns.State, ns.Reason)
		}
		return nil
	})
	seen := time.Since(unplugged)
	pause, ok := firstDecision(t, laptop, unplugged.Add(-time.Second), func(d ownerDecision) bool { return d.state == owner.StatePaused })
	if !ok {
		t.Fatal("the laptop's status says paused but its log has no pause decision (log format changed?)")
	}
	if pause.reason != owner.ReasonOnBattery {
		t.Fatalf("paused for %q, want %q", pause.reason, owner.ReasonOnBattery)
	}
	decided := pause.at.Sub(unplugged)
	t.Logf("unplug → pause decision %s (deadline: pause-after %s + 1 s); → status says paused %s",
		decided.Round(time.Millisecond), pauseAfter, seen.Round(time.Millisecond))
	if decided > pauseAfter+time.Second {
		t.Errorf("paused %s after the unplug: missed the deadline of pause-after %s + 1 s", decided.Round(time.Millisecond), pauseAfter)
	}
	if decided < pauseAfter-100*time.Millisecond {
		t.Errorf("paused %s after the unplug, before pause-after %s", decided, pauseAfter)
	}

	waitDoneOrStalled(t, ps, id, samples)
	checkPiExact(t, ps, id, seed, samples)

	// The laptop's work before the pause is kept: every sample it logged
	// as computed — including the finished prefix of the chunk in hand at
	// the pause — was accepted as its share.
	j, err := jobContribOn(ps[0], id)
	if err != nil {
		t.Fatal(err)
	}
	accepted := j.unitsOf(laptop.id)
	chunks := chunksLogged(t, laptop, id)
	var logged uint64
	for _, c := range chunks {
		logged += c.r.Len()
	}
	t.Logf("laptop: %d units accepted before the unplug, %d in the end, %d logged in %d chunks", before, accepted, logged, len(chunks))
	if accepted == 0 || accepted < before {
		t.Fatalf("the laptop's accepted units went from %d to %d: work before the pause was lost", before, accepted)
	}
	if accepted != logged {
		t.Errorf("the laptop computed %d units but %d were accepted as its share: a paused prefix was lost or rejected", logged, accepted)
	}

	// The pause stops the chunk in hand: after the decision the laptop
	// logs at most that chunk's finished prefix, and starts nothing.
	checkNothingStartedWhilePaused(t, laptop.name, chunks, pause.at, time.Time{})
	if ns, err := selfState(laptop); err != nil || ns.State != webui.StatePaused {
		t.Errorf("the laptop at the end: %+v, %v; want still paused (resume-after 1h)", ns, err)
	}

	// No sample the laptop computed was computed again: its ranges are
	// disjoint from each other and from every other node's. Between the
	// dedicated nodes, a range logged twice is a backup copy of one of the
	// last chunks (first result wins); any other overlap would be a lease
	// that expired while its node still computed it — the scheduler's
	// business, not the owner policy's, so it is only reported.
	byNode := rangesLogged(t, ps, id)
	var all compute.RangeSet
	var sum, backups, otherDup uint64
	for name, rs := range byNode {
		for i, r := range rs {
			sum += r.Len()
			all.Add(r)
			for other, ors := range byNode {
				for k, o := range ors {
					if other < name || other == name && k <= i {
						continue // each pair once
					}
					n := overlap(r, o)
					switch {
					case n == 0:
					case name == laptop.name || other == laptop.name:
						t.Errorf("%d samples computed twice: %s by %s and %s by %s", n, r, name, o, other)
					case r == o && name != other:
						backups += n
					default:
						otherDup += n
						t.Logf("%d samples computed twice, not as a backup: %s by %s and %s by %s", n, r, name, o, other)
					}
				}
			}
		}
	}
	// Every sample was logged by some node: the union of the logged ranges
	// is the job, and what was logged beyond it is the overlaps.
	if !all.Covers(compute.Range{Start: 0, End: samples}) || all.Units() != samples {
		t.Fatalf("the logged chunks cover %d of %d samples (%v): cannot check (log format changed?)", all.Units(), samples, all.Ranges())
	}
	t.Logf("logged: %d units for %d samples; computed twice: %d in backup copies, %d otherwise, none by the laptop; logged minus twice computed: %d",
		sum, samples, backups, otherDup, sum-backups-otherDup)
}

func TestSystem_OwnerCPUHogPausesAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	if os.Getenv("HYDRA_SERIAL_TESTS") != "1" {
		t.Skip("measures the whole machine's CPU, so it must run alone: scripts/test runs it with HYDRA_SERIAL_TESTS=1 after the other packages")
	}
	// One node with the owner rules on, reading the real /proc; its
	// --sys-root is an empty tree so that a battery or a hot CPU on the
	// machine running the test cannot pause or throttle it. 75 % of the
	// machine: ordinary background load stays below, the hog (every core)
	// above.
	const pauseAfter, resumeAfter = time.Second, 3 * time.Second
	ps, token := startProcCluster(t, 1, func(int) []string {
		return []string{"--dedicated=false", "--idle-after", "0", "--on-battery", "run", "--min-battery", "0",
			"--max-owner-cpu", "75", "--pause-after", pauseAfter.String(), "--resume-after", resumeAfter.String(),
			"--sys-root", t.TempDir()}
	})
	n := ps[0]
	const samples, seed uint64 = 4_000_000_000, 17
	id := submitJob(t, n, token, map[string]any{"kind": "pi", "samples": samples, "seed": seed})
	waitFor(t, 60*time.Second, "the node working (baseline)", func() error {
		ns, err := selfState(n)
		if err != nil {
			return err
		}
		if ns.State == webui.StatePaused {
			t.Fatalf("paused (%s) before the hog started: the machine is too busy for this test", ns.Reason)
		}
		if ns.State != webui.StateWorking {
			return fmt.Errorf("%s %s", ns.State, ns.Reason)
		}
		return nil
	})

	kill := startCPUHog(t)
	hogStarted := time.Now()
	waitFor(t, 15*time.Second, "the node paused: owner cpu", func() error {
		ns, err := selfState(n)
		if err != nil {
			return err
		}
		if ns.State != webui.StatePaused || !strings.HasPrefix(ns.Reason, "owner cpu ") {
			return fmt.Errorf("%s %q", ns.State, ns.Reason)
		}
		return nil
	})
	seen := time.Since(hogStarted)
	pause, ok := firstDecision(t, n, hogStarted, func(d ownerDecision) bool { return d.state == owner.StatePaused })
	if !ok {
		t.Fatal("the status says paused but the log has no pause decision (log format changed?)")
	}
	t.Logf("hog started → pause decision (%s) %s; → status says paused %s (pause-after %s)",
		pause.reason, pause.at.Sub(hogStarted).Round(time.Millisecond), seen.Round(time.Millisecond), pauseAfter)

	// Compute has stopped: the job's progress stands still.
	var frozen uint64
	var frozenSince time.Time
	waitFor(t, 15*time.Second, "job progress standing still for 2 s", func() error {
		j, err := jobOn(n, id)
		if err != nil {
			return err
		}
		if j.State == compute.StateDone {
			t.Fatal("the job finished while the node should be paused")
		}
		if j.DoneUnits != frozen || frozenSince.IsZero() {
			frozen, frozenSince = j.DoneUnits, time.Now()
		}
		if d := time.Since(frozenSince); d < 2*time.Second {
			return fmt.Errorf("%d of %d units, unchanged for %s", j.DoneUnits, j.TotalUnits, d.Round(time.Millisecond))
		}
		return nil
	})

	killed := kill()
	waitFor(t, resumeAfter+30*time.Second, "the node working again", func() error {
		ns, err := selfState(n)
		if err != nil {
			return err
		}
		if ns.State != webui.StateWorking {
			return fmt.Errorf("%s %q", ns.State, ns.Reason)
		}
		return nil
	})
	seenResumed := time.Since(killed)
	resume, ok := firstDecision(t, n, pause.at, func(d ownerDecision) bool { return d.state != owner.StatePaused })
	if !ok {
		t.Fatal("the status says working but the log has no resume decision")
	}
	t.Logf("hog killed → resume decision %s; → status says working %s (resume-after %s)",
		resume.at.Sub(killed).Round(time.Millisecond), seenResumed.Round(time.Millisecond), resumeAfter)
	if resume.at.Before(killed) {
		t.Fatalf("resumed %s before the hog was killed", killed.Sub(resume.at))
	}
	if d := resume.at.Sub(killed); d < resumeAfter {
		t.Fatalf("resumed %s after the hog was killed, before the calm-down of %s", d, resumeAfter)
	}

	waitDoneOrStalled(t, ps, id, samples)
	checkPiExact(t, ps, id, seed, samples)

	// While paused, nothing was computed: the chunk in hand at the pause
	// handed in its prefix, and no chunk began until the resume.
	checkNothingStartedWhilePaused(t, n.name, chunksLogged(t, n, id), pause.at, resume.at)
}

// checkNothingStartedWhilePaused checks a node's chunks against a pause
// from paused until resumed (zero: still paused): at most one chunk — the
// one in hand, stopped by the pause — is logged in between, and it began
// before the pause. The prefix may come late: the compute process runs at
// idle priority, and under an owner's load that uses every core it gets
// hardly any CPU to notice the stop and answer.
func checkNothingStartedWhilePaused(t *testing.T, name string, chunks []loggedChunk, paused, resumed time.Time) {
	t.Helper()
	// Log times are in milliseconds, durations are not: allow for rounding.
	const slack = 5 * time.Millisecond
	n := 0
	for _, c := range chunks {
		if !c.at.After(paused) || !resumed.IsZero() && !c.at.Before(resumed) {
			continue
		}
		n++
		t.Logf("%s: chunk in hand at the pause handed in %s, begun %s before the decision, logged %s after it",
			name, c.r, paused.Sub(c.began).Round(time.Millisecond), c.at.Sub(paused).Round(time.Millisecond))
		if c.began.After(paused.Add(slack)) {
			t.Errorf("%s: chunk %s began %s after the pause decision", name, c.r, c.began.Sub(paused).Round(time.Millisecond))
		}
	}
	if n > 1 {
		t.Errorf("%s: %d chunks logged while paused, want at most the one in hand", name, n)
	}
}
