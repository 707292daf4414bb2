//go:build unix

package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/childproc"
	"github.com/hydra-compute/hydra/internal/localport"
	"github.com/hydra-compute/hydra/webui"
)

// The system tests run real `hydra node` processes on loopback and kill
// them with SIGKILL: the binary is built once per test run, as the release
// builds it (goRelease), and its nodes run the portable kernels
// (compute.KernelsEnv) unless a test asks for the vector ones
// (nativeKernels): the sizes of the tests' jobs were chosen for them.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// goRelease returns a go command (build, or test -c) with the release's build settings
// (scripts/internal/release-go.sh: CGO_ENABLED=0, GOEXPERIMENT=simd, -trimpath, -buildvcs=false) and the
// GOOS/GOARCH of env. scripts/test builds every release target that way before the suite, so
// these builds find every package compiled and only link; any other settings compile the whole
// program once more (about 100 s a target here with a cold cache).
func goRelease(verb string, args []string, env ...string) *exec.Cmd {
	cmd := exec.Command("go", append([]string{verb, "-trimpath", "-buildvcs=false"}, args...)...)
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOEXPERIMENT=simd"), env...)
	return cmd
}

// nativeKernels holds the binaries whose nodes run the kernels they
// measure fastest (simdBinary's): the others are told to run the portable ones.
var nativeKernels sync.Map

func hydraBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hydra-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hydra")
		out, err := goRelease("build", []string{"-o", binPath, ".."}).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is one node process of a system test.
type proc struct {
	t        *testing.T
	bin      string // binary to run (default: the amd64 build of this tree)
	name     string
	dir      string
	args     []string
	api      string
	id       string
	p2pPort  int
	httpPort int
	cmd      *exec.Cmd
	exited   chan struct{}
	// uid, when not 0, is the user the process runs as (TestChaos: a user per node, so that
	// iptables can cut one node's traffic by its owner).
	uid uint32
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	p, err := localport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startProc(t *testing.T, name, dir string, p2pPort, httpPort int, extra ...string) *proc {
	t.Helper()
	return startProcBin(t, "", name, dir, p2pPort, httpPort, extra...)
}

// startProcBin is startProc with another binary than this tree's default build (bin "").
func startProcBin(t *testing.T, bin, name, dir string, p2pPort, httpPort int, extra ...string) *proc {
	t.Helper()
	return startProcAs(t, 0, bin, name, dir, p2pPort, httpPort, extra...)
}

// startProcAs is startProcBin with the process running as user uid (0: this process's).
func startProcAs(t *testing.T, uid uint32, bin, name, dir string, p2pPort, httpPort int, extra ...string) *proc {
	t.Helper()
	p := &proc{t: t, bin: bin, name: name, dir: dir, p2pPort: p2pPort, httpPort: httpPort, uid: uid}
	p.api = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	// --admit lan: test clusters on loopback admit each other with no
	// approval (docs/security.md); a test of approval passes its own flags.
	p.args = append([]string{"node", "--data", dir, "--name", name, "--mdns=false", "--dht=false", "--admit", "lan",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--cpus", "1", "--log-level", "debug", "--dedicated"}, extra...)
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	bin := p.bin
	if bin == "" {
		bin = hydraBinary(p.t)
	}
	p.cmd = exec.Command(bin, p.args...)
	if _, native := nativeKernels.Load(bin); !native {
		p.cmd.Env = append(os.Environ(), compute.KernelsEnv+"=portable")
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.uid != 0 {
		p.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: p.uid, Gid: p.uid}
	}
	exited := make(chan struct{})
	p.exited = exited
	// A test binary that dies (a -timeout panic skips the cleanups that kill its nodes) takes its
	// nodes with it, where the kernel can.
	if err := childproc.Start(p.cmd, exited); err != nil {
		logf.Close()
		p.t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(exited) }()
}

// kill SIGKILLs the node and its compute process (its process group).
func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

func (p *proc) client(token string) *webui.Client { return webui.NewClient(p.api, token) }

func (p *proc) status() (webui.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return p.client("").Status(ctx)
}

func (p *proc) joinAddr() string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", p.p2pPort, p.id)
}

func (p *proc) dumpLog() string {
	b, _ := os.ReadFile(p.logPath())
	lines := strings.Split(string(b), "\n")
	keep := 40
	if v := os.Getenv("HYDRA_TEST_LOG_LINES"); v != "" {
		fmt.Sscan(v, &keep)
	}
	if len(lines) > keep {
		lines = lines[len(lines)-keep:]
	}
	return strings.Join(lines, "\n")
}

// startProcCluster starts size node processes joined to the first one and
// waits until they form one cluster with its voters: three, or one while
// there are fewer than three nodes (the voter count never stops on an even
// number: docs/design.md §5).
func startProcCluster(t *testing.T, size int, extra func(i int) []string) ([]*proc, string) {
	t.Helper()
	return startProcClusterBin(t, "", size, extra)
}

// startProcClusterBin is startProcCluster with every node running bin ("" for the default build).
func startProcClusterBin(t *testing.T, bin string, size int, extra func(i int) []string) ([]*proc, string) {
	t.Helper()
	return startProcClusterBins(t, size, extra, func(int) string { return bin })
}

// startProcClusterBins is startProcCluster with node i running bin(i) ("" for the default build).
func startProcClusterBins(t *testing.T, size int, extra func(i int) []string, bin func(i int) string) ([]*proc, string) {
	t.Helper()
	base := t.TempDir()
	var ps []*proc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range ps {
				t.Logf("--- log of %s ---\n%s", p.name, p.dumpLog())
			}
		}
	})
	// Every node starts at once, the first one's key made beforehand so
	// that the others can be given its address: machines started together
	// end in one cluster (docs/design.md §5).
	firstDir := filepath.Join(base, "n0")
	firstID := presetIdentity(t, firstDir)
	for i := range size {
		var args []string
		if extra != nil {
			args = extra(i)
		}
		if i > 0 {
			args = append(args, "--join", ps[0].joinAddr())
		}
		p := startProcBin(t, bin(i), fmt.Sprintf("n%d", i), filepath.Join(base, fmt.Sprintf("n%d", i)), freeTCPPort(t), freeTCPPort(t), args...)
		if i == 0 {
			p.id = firstID
		}
		ps = append(ps, p)
	}
	wantVoters := 1
	if size >= 3 {
		wantVoters = 3
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("one cluster of all nodes with %d voters", wantVoters), func() error {
		for _, p := range ps {
			st, err := p.status()
			if err != nil {
				return err
			}
			p.id = st.Self.ID
			members, voters := shape(st)
			if st.Leader == "" || members != size || voters != wantVoters {
				return fmt.Errorf("%s: leader %q, %d members online, %d voters", p.name, st.Leader, members, voters)
			}
		}
		return nil
	})
	var token string
	waitFor(t, 10*time.Second, "API token", func() error {
		_, tok, err := ReadLocal(ps[0].dir)
		if err == nil && tok == "" {
			err = errors.New("no token yet")
		}
		token = tok
		return err
	})
	return ps, token
}

// leaderOf waits (30 s) until one of ps says it is the leader and returns it.
func leaderOf(t *testing.T, ps []*proc) *proc {
	t.Helper()
	var leader *proc
	waitFor(t, 30*time.Second, "a leader", func() error {
		// The node that says it leads, not the first node's view of who does: a follower's
		// view can lag a leader change (an election on a busy machine), and a test that then
		// kills or signals "the leader" would act on a follower.
		for _, p := range ps {
			if st, err := p.status(); err == nil && st.Leader != "" && st.Leader == p.id {
				leader = p
				return nil
			}
		}
		return errors.New("no node says it leads")
	})
	return leader
}

func alive(ps []*proc, except ...*proc) []*proc {
	var out []*proc
	for _, p := range ps {
		skip := false
		for _, e := range except {
			skip = skip || p == e
		}
		select {
		case <-p.exited:
			skip = true
		default:
		}
		if !skip {
			out = append(out, p)
		}
	}
	return out
}

type jobInfo struct {
	ID         string           `json:"id"`
	State      compute.JobState `json:"state"`
	DoneUnits  uint64           `json:"done_units"`
	TotalUnits uint64           `json:"total_units"`
}

func submitJob(t *testing.T, p *proc, token string, body map[string]any) string {
	t.Helper()
	var j jobInfo
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.client(token).Do(ctx, "POST", "/api/v1/jobs", body, &j); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return j.ID
}

func jobOn(p *proc, id string) (jobInfo, error) {
	var j jobInfo
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id, nil, &j)
	return j, err
}

// waitProgress waits until the job is at least frac done (seen from p).
func waitProgress(t *testing.T, ps []*proc, id string, frac float64, limit time.Duration) {
	t.Helper()
	waitFor(t, limit, fmt.Sprintf("job %s %.0f%% done", id, frac*100), func() error {
		for _, p := range alive(ps) {
			j, err := jobOn(p, id)
			if err != nil {
				continue
			}
			if j.TotalUnits > 0 && float64(j.DoneUnits) >= frac*float64(j.TotalUnits) {
				return nil
			}
			return fmt.Errorf("%d of %d units", j.DoneUnits, j.TotalUnits)
		}
		return errors.New("no node answers")
	})
}

func waitDone(t *testing.T, ps []*proc, id string, limit time.Duration) {
	t.Helper()
	waitFor(t, limit, "job "+id+" done on every live node", func() error {
		for _, p := range alive(ps) {
			j, err := jobOn(p, id)
			if err != nil {
				return err
			}
			if j.State != compute.StateDone {
				return fmt.Errorf("%s sees %s %d/%d", p.name, j.State, j.DoneUnits, j.TotalUnits)
			}
		}
		return nil
	})
}

func TestSystem_PiExactThroughLeaderAndWorkerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 4, nil)
	const samples, seed = 600_000_000, 7
	id := submitJob(t, ps[1], token, map[string]any{"kind": "pi", "samples": samples, "seed": seed})
	waitProgress(t, ps, id, 0.2, 120*time.Second)
	leader := leaderOf(t, ps)
	leader.kill()
	var worker *proc
	for _, p := range alive(ps) {
		worker = p
	}
	waitProgress(t, alive(ps), id, 0.5, 120*time.Second)
	// One failure at a time: the dead leader's vote has moved to the
	// non-voter before the next node dies (a 3-voter cluster survives one).
	waitFor(t, 60*time.Second, "three live voters again", func() error {
		st, err := worker.status()
		if err != nil {
			return err
		}
		live := map[string]bool{}
		for _, p := range alive(ps) {
			live[p.id] = true
		}
		v := 0
		for _, n := range st.Nodes {
			if (n.Role == webui.RoleLeader || n.Role == webui.RoleVoter) && live[n.ID] {
				v++
			}
		}
		if v != 3 {
			return fmt.Errorf("%d live voters", v)
		}
		return nil
	})
	worker.kill()
	waitDone(t, alive(ps), id, 300*time.Second)

	checkPiExact(t, ps, id, seed, samples)
}

func TestSystem_MandelbrotExactThroughLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 3, nil)
	params := compute.MandelParams{Width: 480, Height: 270, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.002, MaxIter: 4000}
	id := submitJob(t, ps[2], token, map[string]any{"kind": "mandelbrot", "width": params.Width, "height": params.Height,
		"center_x": params.CenterX, "center_y": params.CenterY, "span": params.Span, "max_iter": params.MaxIter})
	waitProgress(t, ps, id, 0.2, 120*time.Second)
	leaderOf(t, ps).kill()
	waitDone(t, alive(ps), id, 300*time.Second)

	want := make([]uint32, params.Width*params.Height)
	if err := compute.MandelRows(params, 0, params.Height, want); err != nil {
		t.Fatal(err)
	}
	for _, p := range alive(ps) {
		var raw []byte
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id+"/result.raw", nil, &raw)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 4*len(want) {
			t.Fatalf("%s: %d bytes of raw result, want %d", p.name, len(raw), 4*len(want))
		}
		for i, w := range want {
			if got := binary.LittleEndian.Uint32(raw[4*i:]); got != w {
				t.Fatalf("%s: pixel %d (row %d) = %d, want %d", p.name, i, i/params.Width, got, w)
			}
		}
	}
}

func TestSystem_WholeClusterKilledResumesWithoutRedoing(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 3, nil)
	const samples, seed = 400_000_000, 11
	id := submitJob(t, ps[0], token, map[string]any{"kind": "pi", "samples": samples, "seed": seed})
	waitProgress(t, ps, id, 0.3, 120*time.Second)
	var before uint64
	for _, p := range ps {
		if j, err := jobOn(p, id); err == nil && j.DoneUnits > before {
			before = j.DoneUnits
		}
	}
	for _, p := range ps {
		p.kill()
	}
	restarted := time.Now()
	for _, p := range ps {
		p.start()
	}
	waitDone(t, ps, id, 300*time.Second)
	checkPiExact(t, ps, id, seed, samples)
	// Work computed in the cluster's second life, counted once however many
	// copies (backups of the last chunks) computed it: at most what was
	// pending at the kill. Redoing accepted chunks would exceed it.
	var all []compute.Range
	var copies uint64
	for _, p := range ps {
		for _, c := range chunksLogged(t, p, id) {
			if c.at.After(restarted) {
				copies += c.r.Len()
				all = append(all, c.r)
			}
		}
	}
	union := compute.NewRangeSet(all...)
	after := union.Units()
	t.Logf("accepted before the kill ≥ %d units; computed after the restart: %d distinct units (%d with backup copies) of %d", before, after, copies, samples)
	if after == 0 {
		t.Fatal("no chunk logged after the restart: cannot check (log format changed?)")
	}
	if after > samples-before {
		t.Fatalf("computed %d distinct units after the restart, more than the %d pending: accepted work was redone", after, samples-before)
	}
}

func (p *proc) logPath() string { return filepath.Join(filepath.Dir(p.dir), p.name+".log") }

// shape counts the members a status lists online and its voters (the leader among them): what
// the system tests wait for when they start a cluster.
func shape(st webui.Status) (members, voters int) {
	for _, n := range st.Nodes {
		if n.Role != webui.RoleNone && n.Online {
			members++
		}
		if n.Role == webui.RoleLeader || n.Role == webui.RoleVoter {
			voters++
		}
	}
	return members, voters
}
