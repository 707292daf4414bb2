//go:build linux

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// TestChaos mixes the faults a home cluster meets over a day on 5 real node processes while
// a stream of jobs (π, Mandelbrot, the primes WebAssembly example) runs: a SIGKILL and restart
// of a node (the leader half the time), a closed lid (SIGSTOP of its process group, SIGCONT
// 2–40 s later), a cut cable (iptables drops its packets on loopback for 2–30 s), a full
// disk (its data directory is a small tmpfs, filled for 5–30 s; a node that stops on it is
// started again, as its service manager would), and `hydra remove` + `hydra approve` of a
// node. At most two nodes are under a fault at once. It checks all along that no node process
// exits but one stopped by a full disk, that a job seen done stays done with its result, and
// that no node's RSS passes 1 GiB; once the faults stop, that within a bounded settle time
// every job submitted is done (or failed with a reason), every done job's result is bit-exact
// to the reference on every node, audit counters are sane, and every node names the same
// leader and members.
//
// It runs only with HYDRA_CHAOS=1 (scripts/test leaves it out by name); needs root (tmpfs
// mounts, iptables, a user per node). HYDRA_CHAOS_SEED replays a run (the seed is printed), HYDRA_CHAOS_DURATION
// sets how long faults are injected (default 3m; the documented long run is 25m).
func TestChaos(t *testing.T) {
	if os.Getenv("HYDRA_CHAOS") != "1" {
		t.Skip("set HYDRA_CHAOS=1 to run the chaos harness (minutes of faults on 5 real nodes)")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HYDRA_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HYDRA_CHAOS_SEED: %v", err)
		}
		seed = v
	}
	dur := 3 * time.Minute
	if s := os.Getenv("HYDRA_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("HYDRA_CHAOS_DURATION %q: %v", s, err)
		}
		dur = d
	}
	t.Logf("chaos seed %d (replay: HYDRA_CHAOS_SEED=%d), faults for %s", seed, seed, dur)
	c := newChaos(t, seed)
	c.startCluster(5)
	c.prepareReferences()
	c.run(dur)
	c.settle(6 * time.Minute)
	c.logf("faults injected: %v", c.counts)
}

// chaos is the state of one TestChaos run.
type chaos struct {
	t     *testing.T
	rng   *rand.Rand // used by the fault loop only (one goroutine): a seed replays its choices
	jrng  *rand.Rand // the job stream's own
	start time.Time
	ps    []*proc
	token string

	mu        sync.Mutex
	busy      map[*proc]string // nodes under a fault, and which
	mayExit   map[*proc]bool   // a full disk may stop these
	jobs      []*chaosJob
	done      map[string]bool // jobs seen done and verified on some node
	counts    map[string]int
	maxRSS    map[string]int64
	failure   error
	stopFault chan struct{}

	primesNative map[uint64]string // items -> the native primes example's answer
	primesModule string            // its uploaded sha256
}

// chaosJob is one job submitted during the run, with what checks its result.
type chaosJob struct {
	id     string
	kind   string
	pi     *compute.PiParams
	mandel *compute.MandelParams
	items  uint64 // wasm primes
	// wantMandel is the reference, computed once when first needed.
	wantMandel []uint32
	wantHits   *uint64 // π: the reference's hits
}

func newChaos(t *testing.T, seed uint64) *chaos {
	return &chaos{t: t, rng: rand.New(rand.NewPCG(seed, 1)), jrng: rand.New(rand.NewPCG(seed, 2)), start: time.Now(),
		busy: map[*proc]string{}, mayExit: map[*proc]bool{}, done: map[string]bool{},
		counts: map[string]int{}, maxRSS: map[string]int64{}, stopFault: make(chan struct{})}
}

func (c *chaos) logf(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("[%7.1fs] %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

// fail records the first invariant broken; the run stops at its next check.
func (c *chaos) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failure == nil {
		c.failure = err
		c.t.Logf("[%7.1fs] INVARIANT BROKEN: %v", time.Since(c.start).Seconds(), err)
	}
}

// startCluster starts n nodes, each with its data directory on a tmpfs of its own (160 MiB: a node starts with 64 MiB free),
// joined to the first one, and waits until they form one cluster with three voters.
func (c *chaos) startCluster(n int) {
	t := c.t
	base := t.TempDir()
	// Every node runs as a user of its own (cutRules matches its packets by owner): the
	// binary and the directories above the data dirs must be theirs to reach.
	for _, d := range []string{base, filepath.Dir(base), filepath.Dir(hydraBinary(t))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.ps {
				t.Logf("--- log of %s ---\n%s", p.name, p.dumpLog())
			}
		}
	})
	for i := range n {
		// The log goes beside the data dir (proc.logPath): the data dir is the mount itself.
		dir := filepath.Join(base, fmt.Sprintf("n%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", data).CombinedOutput(); err != nil {
			t.Fatalf("mount a tmpfs (root needed): %v: %s", err, out)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(data, 0); err != nil {
				_ = syscall.Unmount(data, syscall.MNT_DETACH)
			}
		})
		var first string
		if i == 0 {
			first = presetIdentity(t, data)
		}
		uid := chaosUID + i
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, uid), data).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
		var args []string
		if i > 0 {
			args = append(args, "--join", c.ps[0].joinAddr())
		}
		p := startProcAs(t, uint32(uid), "", fmt.Sprintf("n%d", i), data, freeTCPPort(t), freeTCPPort(t), args...)
		if i == 0 {
			p.id = first
		}
		c.ps = append(c.ps, p)
	}
	waitFor(t, 90*time.Second, "one cluster of 5 nodes with 3 voters", func() error {
		for _, p := range c.ps {
			st, err := p.status()
			if err != nil {
				return err
			}
			p.id = st.Self.ID
			voters, members := 0, 0
			for _, ns := range st.Nodes {
				if ns.Role != webui.RoleNone && ns.Online {
					members++
				}
				if ns.Role == webui.RoleLeader || ns.Role == webui.RoleVoter {
					voters++
				}
			}
			if st.Leader == "" || members != n || voters != 3 {
				return fmt.Errorf("%s: leader %q, %d members online, %d voters", p.name, st.Leader, members, voters)
			}
		}
		return nil
	})
	var first string
	waitFor(t, 10*time.Second, "API token", func() error {
		_, tok, err := ReadLocal(c.ps[0].dir)
		if err == nil && tok == "" {
			err = errors.New("no token yet")
		}
		first = tok
		return err
	})
	// An admin credential of its own: n0's is revoked with n0 when the harness evicts it.
	c.token = first
	out, err := c.admin(c.ps[0], "token", "create", "--role", "admin", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" {
		t.Fatalf("hydra token create: %q: %v", out, err)
	}
	c.token = tok.Token
	c.logf("cluster of %d up", n)
}

// chaosUID is the user node i runs as, plus i.
const chaosUID = 42100

// primesItems are the sizes of the primes jobs: their native answers are computed once.
var primesItems = []uint64{2_000_000, 3_000_000, 5_000_000}

// prepareReferences builds the primes example natively and runs it for every size, and
// uploads its WebAssembly module.
func (c *chaos) prepareReferences() {
	t := c.t
	exe := filepath.Join(t.TempDir(), "primes")
	if out, err := goRelease("build", []string{"-o", exe, "../examples/primes"}).CombinedOutput(); err != nil {
		t.Fatalf("go build primes: %v: %s", err, out)
	}
	c.primesNative = map[uint64]string{}
	for _, n := range primesItems {
		out, err := exec.Command(exe, "-hi", strconv.FormatUint(n, 10), "-params", `{"k":2}`).Output()
		if err != nil {
			t.Fatalf("native primes: %v", err)
		}
		c.primesNative[n] = strings.Fields(string(out))[0]
	}
	code, err := os.ReadFile("../examples/primes/primes.wasm")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := c.ps[0].client(c.token).UploadModule(ctx, code)
	if err != nil {
		t.Fatalf("upload primes.wasm: %v", err)
	}
	c.primesModule = info.SHA256
}

// live returns the nodes whose process runs and that are not stopped by a lid.
func (c *chaos) live() []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*proc
	for _, p := range alive(c.ps) {
		if c.busy[p] != "lid" && c.busy[p] != "kill" {
			out = append(out, p)
		}
	}
	return out
}

// run injects faults and submits jobs for d, checking the running invariants all along.
func (c *chaos) run(d time.Duration) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); c.jobStream(stop) }()
	go func() { defer wg.Done(); c.watch(stop) }()
	faults := &sync.WaitGroup{}
	end := time.Now().Add(d)
	for time.Now().Before(end) && c.err() == nil {
		wait := time.Duration(3+c.rng.IntN(10)) * time.Second
		time.Sleep(wait) // the pace of the faults: the injector's own clock, not a synchronisation
		c.inject(faults)
	}
	c.logf("fault window over; waiting for the faults in progress to end")
	faults.Wait()
	close(stop)
	wg.Wait()
	if err := c.err(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chaos) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failure
}

// inject picks a fault and a node (at most two nodes under a fault at once) and starts it; a
// fault with a duration ends on its own goroutine.
func (c *chaos) inject(faults *sync.WaitGroup) {
	kinds := []string{"kill", "lid", "cut", "disk", "remove"}
	kind := kinds[c.rng.IntN(len(kinds))]
	c.mu.Lock()
	if len(c.busy) >= 2 {
		c.mu.Unlock()
		return
	}
	var free []*proc
	for _, p := range c.ps {
		if c.busy[p] == "" {
			free = append(free, p)
		}
	}
	c.mu.Unlock()
	// The leader half the time, when it is free.
	var target *proc
	if c.rng.IntN(2) == 0 {
		for _, p := range free {
			if st, err := p.status(); err == nil && st.Leader == p.id {
				target = p
			}
		}
	}
	if target == nil {
		target = free[c.rng.IntN(len(free))]
	}
	secs := func(lo, hi int) time.Duration { return time.Duration(lo+c.rng.IntN(hi-lo+1)) * time.Second }
	var hold time.Duration
	switch kind {
	case "kill":
		hold = secs(1, 10)
	case "lid":
		hold = secs(2, 40)
	case "cut":
		hold = secs(2, 30)
	case "disk":
		hold = secs(5, 30)
	}
	c.mu.Lock()
	c.busy[target] = kind
	c.counts[kind]++
	c.mu.Unlock()
	faults.Add(1)
	go func() {
		defer faults.Done()
		defer func() { c.mu.Lock(); delete(c.busy, target); c.mu.Unlock() }()
		if err := c.fault(kind, target, hold); err != nil {
			c.fail(fmt.Errorf("%s of %s: %w", kind, target.name, err))
		}
	}()
}

// fault applies one fault to p for hold and undoes it.
func (c *chaos) fault(kind string, p *proc, hold time.Duration) error {
	switch kind {
	case "kill":
		c.logf("SIGKILL %s, restart in %s", p.name, hold)
		p.kill()
		time.Sleep(hold) // how long the machine stays off
		p.start()
		c.logf("restarted %s", p.name)
	case "lid":
		c.logf("lid closed on %s (SIGSTOP) for %s", p.name, hold)
		if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("SIGSTOP: %w", err)
		}
		time.Sleep(hold)
		if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("SIGCONT: %w", err)
		}
		c.logf("lid opened on %s", p.name)
	case "cut":
		c.logf("cable of %s cut for %s", p.name, hold)
		rules := cutRules(p)
		for _, r := range rules {
			if out, err := exec.Command("iptables", append([]string{"-I"}, r...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("iptables: %w: %s", err, out)
			}
		}
		time.Sleep(hold)
		for _, r := range rules {
			if out, err := exec.Command("iptables", append([]string{"-D"}, r...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("iptables: %w: %s", err, out)
			}
		}
		c.logf("cable of %s back", p.name)
	case "disk":
		c.logf("disk of %s full for %s", p.name, hold)
		c.mu.Lock()
		c.mayExit[p] = true
		c.mu.Unlock()
		filler := filepath.Join(p.dir, "filler")
		if err := fillDisk(filler); err != nil {
			return err
		}
		time.Sleep(hold)
		if err := os.Remove(filler); err != nil {
			return fmt.Errorf("free the disk: %w", err)
		}
		select {
		case <-p.exited:
			c.logf("disk of %s free again; it had stopped: started again", p.name)
			c.mu.Lock()
			c.counts["disk-stop"]++
			c.mu.Unlock()
			p.start()
		default:
			c.logf("disk of %s free again", p.name)
		}
		c.mu.Lock()
		delete(c.mayExit, p)
		c.mu.Unlock()
	case "remove":
		return c.removeApprove(p)
	}
	return nil
}

// cutRules are the iptables rules (for -I or -D) that cut a loopback node off: every TCP
// packet its user sends but its API's answers (the harness reads its status), and every
// connection attempt to its libp2p port. Its dials come from ephemeral ports (the node
// turns reuseport off), so a rule on its port alone would leave them up.
func cutRules(p *proc) [][]string {
	return [][]string{
		{"OUTPUT", "-o", "lo", "-p", "tcp", "-m", "owner", "--uid-owner", strconv.Itoa(int(p.uid)),
			"!", "--sport", strconv.Itoa(p.httpPort), "-j", "DROP"},
		{"INPUT", "-i", "lo", "-p", "tcp", "--dport", strconv.Itoa(p.p2pPort), "-j", "DROP"},
	}
}

// fillDisk writes filler until its file system is full.
func fillDisk(filler string) error {
	f, err := os.Create(filler)
	if err != nil {
		return fmt.Errorf("fill the disk: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("fill the disk: %w", err)
		}
	}
}

// admin runs a hydra admin command against p, retried for 60 s while there is no leader
// (an earlier fault may have left none for a while).
func (c *chaos) admin(p *proc, args ...string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := hydraCLI(c.t, 30*time.Second, append(args, "--api", p.api, "--token", c.token)...)
		if err == nil {
			return out, nil
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("hydra %s: %w: %s", strings.Join(args, " "), err, out)
		}
		c.logf("hydra %s on %s: %v: %s (retrying)", args[0], p.name, err, strings.TrimSpace(out))
		time.Sleep(time.Second) // retry pace
	}
}

// removeApprove evicts p with `hydra remove` through another live node, waits until the
// others list it no more, then approves it again and waits until it is a member again.
func (c *chaos) removeApprove(p *proc) error {
	var via *proc
	for _, q := range c.live() {
		if q != p {
			via = q
		}
	}
	if via == nil {
		return errors.New("no live node to run hydra remove on")
	}
	st, err := p.status()
	if err != nil {
		c.logf("remove of %s: no status (%v), not removed", p.name, err)
		return nil
	}
	fp := st.Fingerprint
	c.logf("hydra remove %s (via %s)", p.name, via.name)
	if out, err := c.admin(via, "remove", p.id); err != nil {
		// The only voter left cannot be removed (409), and one fault may leave the
		// cluster with no leader for longer than the retries: neither is a defect.
		c.logf("hydra remove %s: %v: %s", p.name, err, out)
		return nil
	}
	if err := c.waitUntil(60*time.Second, p.name+" gone from the members", func() error {
		for _, q := range c.live() {
			if q == p {
				continue
			}
			st, err := q.status()
			if err != nil {
				continue
			}
			for _, ns := range st.Nodes {
				if ns.ID == p.id && ns.Role != webui.RoleNone {
					return fmt.Errorf("%s still lists it as %s", q.name, ns.Role)
				}
			}
			return nil
		}
		return errors.New("no node answers")
	}); err != nil {
		return err
	}
	time.Sleep(time.Duration(2+c.rng.IntN(15)) * time.Second) // how long it stays out
	c.logf("hydra approve %s (%s)", fp, p.name)
	if _, err := c.admin(via, "approve", p.id); err != nil {
		return err
	}
	if err := c.waitUntil(120*time.Second, p.name+" a member again", func() error {
		for _, q := range c.live() {
			st, err := q.status()
			if err != nil || st.Leader == "" || st.Leader != q.id {
				continue
			}
			for _, ns := range st.Nodes {
				if ns.ID == p.id && ns.Role != webui.RoleNone {
					return nil
				}
			}
			return errors.New("the leader does not list it")
		}
		return errors.New("no leader answers")
	}); err != nil {
		return err
	}
	c.logf("%s a member again", p.name)
	return nil
}

// waitUntil polls cond every 200 ms until it holds or limit passes.
func (c *chaos) waitUntil(limit time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: not within %s: %w", what, limit, err)
}

// jobStream keeps up to three jobs unfinished, submitting a new one through a random live
// node whenever fewer are.
func (c *chaos) jobStream(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(1+c.jrng.IntN(4)) * time.Second): // the users' pace
		}
		unfinished := 0
		c.mu.Lock()
		for _, j := range c.jobs {
			if !c.done[j.id] {
				unfinished++
			}
		}
		c.mu.Unlock()
		if unfinished >= 3 {
			continue
		}
		j := c.newJob()
		live := c.live()
		if len(live) == 0 {
			continue
		}
		p := live[c.jrng.IntN(len(live))]
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var ji jobInfo
		err := p.client(c.token).Do(ctx, "POST", "/api/v1/jobs", j.body(c.primesModule), &ji)
		cancel()
		if err != nil {
			c.logf("submit %s via %s: %v", j.kind, p.name, err)
			continue
		}
		j.id = ji.ID
		c.mu.Lock()
		c.jobs = append(c.jobs, j)
		c.counts["job-"+j.kind]++
		c.mu.Unlock()
		c.logf("submitted %s job %s via %s", j.kind, j.id, p.name)
	}
}

func (c *chaos) newJob() *chaosJob {
	switch c.jrng.IntN(3) {
	case 0:
		return &chaosJob{kind: "pi", pi: &compute.PiParams{Samples: uint64(200_000_000 + c.jrng.IntN(400_000_000)), Seed: c.jrng.Uint64N(1000)}}
	case 1:
		return &chaosJob{kind: "mandelbrot", mandel: &compute.MandelParams{Width: 320, Height: 180 + c.jrng.IntN(60),
			CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.002 + float64(c.jrng.IntN(10))*0.001, MaxIter: 1000 + c.jrng.IntN(2000)}}
	default:
		return &chaosJob{kind: "wasm", items: primesItems[c.jrng.IntN(len(primesItems))]}
	}
}

func (j *chaosJob) body(module string) map[string]any {
	switch j.kind {
	case "pi":
		return map[string]any{"kind": "pi", "samples": j.pi.Samples, "seed": j.pi.Seed}
	case "mandelbrot":
		m := j.mandel
		return map[string]any{"kind": "mandelbrot", "width": m.Width, "height": m.Height, "center_x": m.CenterX,
			"center_y": m.CenterY, "span": m.Span, "max_iter": m.MaxIter}
	default:
		return map[string]any{"kind": "wasm", "module": module, "items": j.items, "reduce": "sum", "params": `{"k":2}`}
	}
}

// check fetches j's result from p and compares it with the reference.
func (c *chaos) check(p *proc, j *chaosJob) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := p.client("")
	switch j.kind {
	case "pi":
		var r compute.PiResult
		if err := cl.Do(ctx, "GET", "/api/v1/jobs/"+j.id+"/result", nil, &r); err != nil {
			return err
		}
		if j.wantHits == nil {
			w, _ := compute.PiHitsParallel(j.pi.Seed, 0, j.pi.Samples, runtime.NumCPU(), nil)
			j.wantHits = &w
		}
		want := *j.wantHits
		if r.Hits != want || r.Samples != j.pi.Samples {
			return fmt.Errorf("%s: π job %s: hits %d of %d, want %d of %d", p.name, j.id, r.Hits, r.Samples, want, j.pi.Samples)
		}
	case "mandelbrot":
		if j.wantMandel == nil {
			w := make([]uint32, j.mandel.Width*j.mandel.Height)
			if err := compute.MandelRows(*j.mandel, 0, j.mandel.Height, w); err != nil {
				return err
			}
			j.wantMandel = w
		}
		var raw []byte
		if err := cl.Do(ctx, "GET", "/api/v1/jobs/"+j.id+"/result.raw", nil, &raw); err != nil {
			return err
		}
		if len(raw) != 4*len(j.wantMandel) {
			return fmt.Errorf("%s: Mandelbrot job %s: %d bytes, want %d", p.name, j.id, len(raw), 4*len(j.wantMandel))
		}
		for i, w := range j.wantMandel {
			if got := uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24; got != w {
				return fmt.Errorf("%s: Mandelbrot job %s: pixel %d = %d, want %d", p.name, j.id, i, got, w)
			}
		}
	default:
		var r webui.ResultView
		if err := cl.Do(ctx, "GET", "/api/v1/jobs/"+j.id+"/result", nil, &r); err != nil {
			return err
		}
		if r.WasmResult == nil || !r.Complete || r.Value != c.primesNative[j.items] {
			return fmt.Errorf("%s: wasm job %s: %+v, native %s", p.name, j.id, r.WasmResult, c.primesNative[j.items])
		}
	}
	return nil
}

// watch checks the running invariants every 2 s: no unexpected exit, RSS bounded, jobs that
// are done on some node verified, and jobs seen done still done.
func (c *chaos) watch(stop chan struct{}) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		for _, p := range c.ps {
			exited := false
			select {
			case <-p.exited:
				exited = true
			default:
			}
			if exited && c.busy[p] != "kill" && !c.mayExit[p] {
				c.mu.Unlock()
				c.fail(fmt.Errorf("%s exited unexpectedly (%v)", p.name, p.cmd.ProcessState))
				c.mu.Lock()
				continue
			}
			if !exited {
				if rss := procRSS(p.cmd.Process.Pid); rss > c.maxRSS[p.name] {
					c.maxRSS[p.name] = rss
					if rss > 1<<30 {
						c.mu.Unlock()
						c.fail(fmt.Errorf("%s RSS %d MiB", p.name, rss>>20))
						c.mu.Lock()
					}
				}
			}
		}
		jobs := append([]*chaosJob(nil), c.jobs...)
		c.mu.Unlock()
		live := c.live()
		var leader *proc
		for _, p := range live {
			if st, err := p.status(); err == nil && st.Leader != "" && st.Leader == p.id {
				leader = p
			}
		}
		for _, j := range jobs {
			c.mu.Lock()
			seen := c.done[j.id]
			c.mu.Unlock()
			if seen {
				// Done stays done: the leader (the state every node converges to) must
				// never show a finished job otherwise. A lagging follower may, until it
				// catches up; the settle phase checks every node. A few jobs a round, at
				// random (a long run has hundreds).
				if leader == nil || rand.IntN(len(jobs)) >= 8 {
					continue
				}
				if v, err := fetchJobView(leader, j.id); err == nil && v.State != compute.StateDone && v.State != compute.StateFailed {
					c.fail(fmt.Errorf("job %s (%s) was finished, the leader %s now shows it %s %d/%d", j.id, j.kind, leader.name, v.State, v.DoneUnits, v.TotalUnits))
				}
				continue
			}
			for _, p := range live {
				v, err := fetchJobView(p, j.id)
				if err != nil {
					continue
				}
				switch v.State {
				case compute.StateDone:
					if err := c.check(p, j); err != nil {
						c.fail(err)
						break
					}
					c.logf("job %s (%s) done, exact on %s", j.id, j.kind, p.name)
				case compute.StateFailed:
					c.logf("job %s (%s) failed on %s: %s", j.id, j.kind, p.name, v.Reason)
				}
				if v.State == compute.StateDone || v.State == compute.StateFailed {
					c.mu.Lock()
					c.done[j.id] = true
					c.mu.Unlock()
				}
				break
			}
		}
	}
}

// procRSS is the resident set of pid and its children (the compute process) in bytes.
func procRSS(pid int) int64 {
	var total int64
	pids := []int{pid}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				pids = append(pids, c)
			}
		}
	}
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				f := strings.Fields(l)
				if len(f) >= 2 {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					total += kb << 10
				}
			}
		}
	}
	return total
}

// settle waits, once the faults are over, for every job to finish and every node to agree,
// then checks every result on every node.
func (c *chaos) settle(limit time.Duration) {
	t := c.t
	c.logf("settling (at most %s)", limit)
	for _, p := range c.ps {
		select {
		case <-p.exited:
			t.Fatalf("%s is not running after the faults", p.name)
		default:
		}
	}
	waitFor(t, limit, "every node names the same leader and members", func() error {
		var leader, members string
		for _, p := range c.ps {
			st, err := p.status()
			if err != nil {
				return err
			}
			var ms []string
			for _, ns := range st.Nodes {
				if ns.Role != webui.RoleNone {
					ms = append(ms, ns.ID)
				}
			}
			sort.Strings(ms)
			m := strings.Join(ms, ",")
			if st.Leader == "" {
				return fmt.Errorf("%s has no leader", p.name)
			}
			if leader == "" {
				leader, members = st.Leader, m
			}
			if st.Leader != leader || m != members {
				return fmt.Errorf("%s: leader %s, members %d, differs from %s's view", p.name, st.Leader, len(ms), c.ps[0].name)
			}
			if len(ms) != len(c.ps) {
				return fmt.Errorf("%s lists %d members", p.name, len(ms))
			}
		}
		return nil
	})
	waitFor(t, limit, "every job finished on every node", func() error {
		for _, j := range c.jobs {
			for _, p := range c.ps {
				v, err := fetchJobView(p, j.id)
				if err != nil {
					return err
				}
				switch v.State {
				case compute.StateDone:
				case compute.StateFailed:
					if v.Reason == "" {
						t.Fatalf("%s: job %s failed with no reason", p.name, j.id)
					}
				default:
					return fmt.Errorf("%s: job %s (%s) %s %d/%d", p.name, j.id, j.kind, v.State, v.DoneUnits, v.TotalUnits)
				}
			}
		}
		return nil
	})
	failed := 0
	for _, j := range c.jobs {
		for _, p := range c.ps {
			v := jobView(t, p, j.id)
			if v.State == compute.StateFailed {
				c.logf("job %s (%s) failed on %s: %s", j.id, j.kind, p.name, v.Reason)
				failed++
				continue
			}
			if v.AuditedUnits > v.DoneUnits || v.ClearedUnits > v.DoneUnits || v.DoneUnits != v.TotalUnits {
				t.Fatalf("%s: job %s: audited %d, cleared %d, done %d of %d", p.name, j.id, v.AuditedUnits, v.ClearedUnits, v.DoneUnits, v.TotalUnits)
			}
			if err := c.check(p, j); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rss []string
	for _, p := range c.ps {
		rss = append(rss, fmt.Sprintf("%s %d MiB", p.name, c.maxRSS[p.name]>>20))
	}
	c.logf("%d jobs, every done one exact on all %d nodes (%d failed views); peak RSS %s", len(c.jobs), len(c.ps), failed, strings.Join(rss, ", "))
}
