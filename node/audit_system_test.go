//go:build unix

package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

var (
	cheatOnce sync.Once
	cheatPath string
	cheatErr  error
)

// cheatBinary builds hydra with the cheat tag: a node that can be told to
// return wrong results (--cheat-rate). Removed with the other builds at exit.
func cheatBinary(t *testing.T) string {
	t.Helper()
	cheatOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hydra-cheat-")
		if err != nil {
			cheatErr = err
			return
		}
		extraBuildDirs = append(extraBuildDirs, dir)
		cheatPath = filepath.Join(dir, "hydra")
		if out, err := goRelease("build", []string{"-tags", "cheat", "-o", cheatPath, ".."}).CombinedOutput(); err != nil {
			cheatErr = fmt.Errorf("go build -tags cheat: %v\n%s", err, out)
		}
	})
	if cheatErr != nil {
		t.Fatal(cheatErr)
	}
	return cheatPath
}

// buildTags returns the -tags a Go binary was built with (go version -m).
func buildTags(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m %s: %v\n%s", bin, err, out)
	}
	if m := regexp.MustCompile(`(?m)^\s+build\s+-tags=(\S+)$`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}

// TestSystem_NormalBuildHasNoCheatCode: the binary CI and releases build
// (no tags) has no cheat tag and refuses --cheat-rate as an unknown flag,
// exit 78; only a -tags cheat build accepts it.
func TestSystem_NormalBuildHasNoCheatCode(t *testing.T) {
	normal, cheat := hydraBinary(t), cheatBinary(t)
	if tags := buildTags(t, normal); strings.Contains(tags, "cheat") {
		t.Fatalf("the normal build has tags %q", tags)
	}
	if tags := buildTags(t, cheat); !strings.Contains(tags, "cheat") {
		t.Fatalf("the cheat build has tags %q", tags)
	}
	out, err := exec.Command(normal, "node", "--data", t.TempDir(), "--cheat-rate", "0.1").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 78 || !strings.Contains(string(out), "cheat-rate") {
		t.Fatalf("normal build with --cheat-rate: %v\n%s\nwant exit 78 naming the unknown flag", err, out)
	}
	out, err = exec.Command(cheat, "node", "--data", t.TempDir(), "--cheat-rate", "2").CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 78 || !strings.Contains(string(out), "cheat-rate 2") {
		t.Fatalf("cheat build with --cheat-rate 2: %v\n%s\nwant exit 78 refusing the rate", err, out)
	}
}

// nodeAudit is a node's audit standing as p's /api/v1/status shows it.
func nodeAudit(p *proc, id string) (webui.NodeAudit, string, error) {
	st, err := p.status()
	if err != nil {
		return webui.NodeAudit{}, "", err
	}
	for _, n := range st.Nodes {
		if n.ID == id {
			return n.Audit, n.Role, nil
		}
	}
	return webui.NodeAudit{}, "", fmt.Errorf("%s does not list node %s", p.name, id)
}

// auditJob is a job of the audit system tests and its reference answer.
type auditJob struct {
	id     string
	pi     *compute.PiParams
	mandel *compute.MandelParams
}

func (j *auditJob) body() map[string]any {
	if j.pi != nil {
		return map[string]any{"kind": "pi", "samples": j.pi.Samples, "seed": j.pi.Seed}
	}
	m := j.mandel
	return map[string]any{"kind": "mandelbrot", "width": m.Width, "height": m.Height,
		"center_x": m.CenterX, "center_y": m.CenterY, "span": m.Span, "max_iter": m.MaxIter}
}

// smallAuditJob is job k of a mix of small π and Mandelbrot jobs: small in
// compute, but each cut into tens of chunks near its end (the scheduler's
// tail shrinks chunks), so a cheater gets tens of chunks in seconds.
func smallAuditJob(k int) *auditJob {
	if k%2 == 0 {
		return &auditJob{pi: &compute.PiParams{Samples: 24 << 20, Seed: uint64(100 + k)}}
	}
	return &auditJob{mandel: &compute.MandelParams{Width: 96, Height: 40, CenterX: -0.743643887, CenterY: 0.131825904,
		Span: 0.01, MaxIter: 400 + 10*k}}
}

// checkExact compares the job's answer, as p serves it, with the reference.
func (j *auditJob) checkExact(t *testing.T, ps []*proc) {
	t.Helper()
	if j.pi != nil {
		checkPiExact(t, ps, j.id, j.pi.Seed, j.pi.Samples)
		return
	}
	want := make([]uint32, j.mandel.Width*j.mandel.Height)
	if err := compute.MandelRows(*j.mandel, 0, j.mandel.Height, want); err != nil {
		t.Fatal(err)
	}
	for _, p := range alive(ps) {
		checkMandelExact(t, p, j.id, want)
	}
}

// jobView is the full job view p serves (audited and redone units).
func jobView(t *testing.T, p *proc, id string) webui.JobView {
	t.Helper()
	v, err := fetchJobView(p, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fetchJobView is jobView for a wait loop: one slow or refused answer (a busy machine, a
// leader change) is a reason to ask again, not a failure.
func fetchJobView(p *proc, id string) (webui.JobView, error) {
	var v webui.JobView
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id, nil, &v); err != nil {
		return v, fmt.Errorf("%s: job %s: %w", p.name, id, err)
	}
	return v, nil
}

// TestSystem_AuditsCatchACheater: five real nodes, one of them a cheat build
// returning a wrong count in one block of 10 % of its chunks, 20 π and
// Mandelbrot jobs. Every chunk is audited (--audit-trust-after keeps every
// node new, so tens of the cheater's chunks suffice, and its third failure
// comes within its first 30 chunks): the cheater is quarantined and loses
// any vote, honest nodes never fail an audit, every result equals the
// reference, and after `trust reset` the cheater is new again.
func TestSystem_AuditsCatchACheater(t *testing.T) {
	cheat := cheatBinary(t)
	start := time.Now()
	const cheater = 4
	ps, token := startProcClusterBins(t, 5, func(i int) []string {
		args := []string{"--chunk-target", "100ms", "--audit-trust-after", "100000"}
		if i == cheater {
			args = append(args, "--cheat-rate", "0.1")
		}
		return args
	}, func(i int) string {
		if i == cheater {
			return cheat
		}
		return ""
	})
	t.Logf("cluster of five up in %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	var jobs []*auditJob
	submit := func() {
		j := smallAuditJob(len(jobs))
		j.id = submitJob(t, ps[len(jobs)%4], token, j.body())
		jobs = append(jobs, j)
	}
	for range 20 {
		submit()
	}
	waitFor(t, 180*time.Second, "the cheater quarantined and every job done", func() error {
		a, _, err := nodeAudit(ps[0], ps[cheater].id)
		if err != nil {
			return err
		}
		busy := 0
		for _, j := range jobs {
			if v, err := jobOn(ps[0], j.id); err != nil || v.State != compute.StateDone {
				busy++
			}
		}
		if a.State == "quarantined" && busy == 0 {
			return nil
		}
		// The cheater cheats on every tenth of its chunks and needs three
		// failures: should the jobs end before it had 30 chunks, more come.
		if busy == 0 && len(jobs) < 40 {
			submit()
		}
		return fmt.Errorf("cheater %s (%d passed, %d failed), %d of %d jobs running", a.State, a.Passed, a.Failed, busy, len(jobs))
	})
	for _, j := range jobs {
		waitDone(t, ps, j.id, 60*time.Second)
		j.checkExact(t, ps)
	}
	// Each wrong chunk is either replaced by the majority's bits when its dispute is settled or
	// computed again (redone): again when the cheater fails with results since its last passed
	// audit unaudited, or is quarantined with results not audited. Which, depends on timing: a
	// cheater whose every result had been audited when it failed the third time has nothing to
	// redo (one CI run out of many). Either way its wrong bits are gone: the jobs are exact
	// (checkExact, above). compute's tests hold the rules for what is redone.
	var redone uint64
	for _, j := range jobs {
		v := jobView(t, ps[1], j.id)
		if v.AuditedUnits == 0 {
			t.Errorf("job %s: no units audited", j.id)
		}
		redone += v.RedoneUnits
	}
	for _, obs := range ps {
		for i, p := range ps {
			a, _, err := nodeAudit(obs, p.id)
			if err != nil {
				t.Fatal(err)
			}
			if i == cheater {
				if a.State != "quarantined" || a.Failed < 3 {
					t.Errorf("%s sees the cheater %+v", obs.name, a)
				}
			} else if a.Failed != 0 || a.State == "quarantined" || a.Passed == 0 {
				t.Errorf("%s sees honest node %s %+v", obs.name, p.name, a)
			}
		}
	}
	waitFor(t, 30*time.Second, "the quarantined cheater without a vote", func() error {
		_, role, err := nodeAudit(ps[0], ps[cheater].id)
		if err == nil && role != webui.RoleNonvoter {
			err = fmt.Errorf("role %s", role)
		}
		return err
	})
	t.Logf("%d jobs done and the cheater quarantined in %s; %d units redone after failed audits", len(jobs), time.Since(start).Round(time.Millisecond), redone)

	// An admin clears the cheater: new again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ps[1].client(token).TrustReset(ctx, ps[cheater].name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the cheater new again", func() error {
		a, _, err := nodeAudit(ps[2], ps[cheater].id)
		if err == nil && (a.State != "new" || a.Failed != 0) {
			err = fmt.Errorf("%+v", a)
		}
		return err
	})
}

// checkMandelExact compares a Mandelbrot job's raw counts, as p serves
// them, with want.
func checkMandelExact(t *testing.T, p *proc, id string, want []uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var raw []byte
	if err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id+"/result.raw", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 4*len(want) {
		t.Fatalf("%s: job %s: %d bytes, want %d", p.name, id, len(raw), 4*len(want))
	}
	for i, w := range want {
		if got := binary.LittleEndian.Uint32(raw[4*i:]); got != w {
			t.Fatalf("%s: job %s: pixel %d = %d, want %d", p.name, id, i, got, w)
		}
	}
}

// TestSystem_AuditsSurviveALeaderChange: three real nodes audit every chunk;
// the leader is SIGKILLed while results it committed still wait for their
// challenge or audit. The new leader finds those audits in the replicated
// state and has them run: the job ends exact with every unit audited and
// counted, nothing redone.
func TestSystem_AuditsSurviveALeaderChange(t *testing.T) {
	ps, token := startProcCluster(t, 3, func(int) []string {
		return []string{"--chunk-target", "100ms", "--audit-trust-after", "100000"}
	})
	j := &auditJob{mandel: &compute.MandelParams{Width: 96, Height: 160, CenterX: -0.743643887, CenterY: 0.131825904,
		Span: 0.002, MaxIter: 3000}}
	j.id = submitJob(t, ps[1], token, j.body())
	leader := leaderOf(t, ps)
	var open uint64
	waitFor(t, 120*time.Second, "results waiting for their audits on the leader", func() error {
		v, err := fetchJobView(leader, j.id)
		if err != nil {
			return err
		}
		if v.State == compute.StateDone {
			t.Fatalf("the job ended before the leader could be killed: make it longer")
		}
		open = v.DoneUnits - v.ClearedUnits
		if v.DoneUnits < v.TotalUnits/5 || open == 0 {
			return fmt.Errorf("%d of %d rows done, %d cleared", v.DoneUnits, v.TotalUnits, v.ClearedUnits)
		}
		return nil
	})
	leader.kill()
	t.Logf("leader %s killed with %d rows committed and not yet audited", leader.name, open)
	waitDone(t, alive(ps), j.id, 120*time.Second)
	j.checkExact(t, ps)
	for _, p := range alive(ps) {
		v := jobView(t, p, j.id)
		if v.ClearedUnits != v.TotalUnits || v.AuditedUnits < v.TotalUnits || v.RedoneUnits != 0 {
			t.Errorf("%s: %d of %d rows cleared, %d audited, %d redone; want all cleared and audited, none redone",
				p.name, v.ClearedUnits, v.TotalUnits, v.AuditedUnits, v.RedoneUnits)
		}
	}
}

// TestSystem_AuditsWaivedWhenTheOnlyAuditorLeaves: a two-machine cluster, every chunk audited
// by the other machine, and the second machine (a worker outside its --schedule window: paused,
// so the audits of every chunk of the first one wait for it) is killed for good mid-job. The first one finishes the rest alone; the audits
// of its own chunks that the other was to run are waived once it has been alone for a while
// (compute.AuditWaive), and the job ends exact. Before, they waited for ever for an auditor.
func TestSystem_AuditsWaivedWhenTheOnlyAuditorLeaves(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 2, func(i int) []string {
		args := []string{"--chunk-target", "100ms", "--audit-trust-after", "100000"}
		if i == 1 { // allowed to compute only hours from now: paused all along
			from := time.Now().Add(6 * time.Hour)
			args = append(args, "--voter", "never", "--schedule", from.Format("15:04")+"-"+from.Add(time.Hour).Format("15:04"))
		}
		return args
	})
	j := &auditJob{mandel: &compute.MandelParams{Width: 96, Height: 240, CenterX: -0.743643887, CenterY: 0.131825904,
		Span: 0.002, MaxIter: 3000}}
	j.id = submitJob(t, ps[0], token, j.body())
	waitFor(t, 120*time.Second, "n0's results waiting for their audits", func() error {
		v, err := fetchJobView(ps[0], j.id)
		if err != nil {
			return err
		}
		if v.State == compute.StateDone || v.ClearedUnits > 0 {
			t.Fatalf("rows cleared while the only other node was paused: %+v", v)
		}
		if v.DoneUnits < v.TotalUnits/4 {
			return fmt.Errorf("%d of %d rows done", v.DoneUnits, v.TotalUnits)
		}
		return nil
	})
	ps[1].kill()
	waitDone(t, ps[:1], j.id, 120*time.Second)
	j.checkExact(t, ps[:1])
	if v := jobView(t, ps[0], j.id); v.ClearedUnits != v.TotalUnits || v.RedoneUnits != 0 {
		t.Errorf("%d of %d rows cleared, %d redone", v.ClearedUnits, v.TotalUnits, v.RedoneUnits)
	}
	log, err := os.ReadFile(ps[0].logPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("audits waived")) {
		t.Errorf("the job ended without a waive")
	}
}
