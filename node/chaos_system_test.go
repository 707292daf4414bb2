//go:build linux

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/testdisk"
)

// TestChaos mixes the faults a home cluster meets over a day on 5 real node processes while
// a stream of jobs (π, Mandelbrot, the primes WebAssembly example) runs: a SIGKILL and restart
// of a node (the leader half the time), a closed lid (SIGSTOP of its process group, SIGCONT
// 2–40 s later), a cut cable (iptables drops its packets on loopback for 2–30 s), a full
// disk (its data directory is a small ext4 disk, filled for 5–30 s; a node that stops on it is
// started again, as its service manager would), a failing disk (the kernel makes it read-only:
// the node must stop with exit code 78 saying so; a new disk, and it joins with a new key as
// after a replaced disk), `hydra remove` + `hydra approve` of a node, a
// lossy link (iptables drops 10–50% of its packets at random for 5–40 s), a replaced disk
// (SIGKILL, its data moved aside, started again with a new key through a member's join
// address; the old key removed, the new one approved) and `hydra leave` (started again, it
// joins anew and is approved). At most two nodes are under a fault at once. It checks all along that no node process
// exits but one stopped by a full disk, that a job seen done stays done with its result, and
// that no node's RSS passes 1 GiB; once the faults stop, that within a bounded settle time
// every job submitted is done (or failed with a reason), every done job's result is bit-exact
// to the reference on every node, audit counters are sane, and every node names the same
// leader and members.
//
// It runs only with HYDRA_CHAOS=1 (scripts/test leaves it out by name); needs root (tmpfs and
// ext4 mounts, loop devices, iptables, a user per node). HYDRA_CHAOS_SEED replays a run (the seed is printed), HYDRA_CHAOS_DURATION
// sets how long faults are injected (default 3m; the documented long run is 25m). Whole node
// logs, the harness's lines and the node–peer ID map go to a directory that outlives a failed
// run (HYDRA_CHAOS_LOGDIR, else under os.TempDir(); printed first).
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
	c.openLogDir(seed)
	c.sweepRules()
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
	// logDir holds each node's whole log (nN/nN.log), chaos.log (the harness's own lines) and
	// peers.txt; it outlives the test when the test fails or HYDRA_CHAOS_LOGDIR names it.
	logDir string
	evMu   sync.Mutex
	events *os.File // logDir/chaos.log

	mu        sync.Mutex
	busy      map[*proc]string            // nodes under a fault, and which
	wipes     int                         // disks replaced so far (names the directories their data went to)
	mayExit   map[*proc]bool              // a full disk may stop these
	disks     map[*proc]*testdisk.Failing // each node's data disk (newChaosDisk)
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
		busy: map[*proc]string{}, mayExit: map[*proc]bool{}, disks: map[*proc]*testdisk.Failing{}, done: map[string]bool{},
		counts: map[string]int{}, maxRSS: map[string]int64{}, stopFault: make(chan struct{})}
}

func (c *chaos) logf(format string, args ...any) {
	c.t.Helper()
	line := fmt.Sprintf("[%7.1fs] %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
	c.t.Log(line)
	c.event(line)
}

// event appends line to chaos.log.
func (c *chaos) event(line string) {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	if c.events != nil {
		_, _ = fmt.Fprintln(c.events, line)
	}
}

// openLogDir makes the run's log directory: under HYDRA_CHAOS_LOGDIR, else under
// os.TempDir(), a directory of its own named after the seed. The nodes' data directories are
// mounted inside it too (their logs go beside them). It is removed at the end of a run that
// passed unless HYDRA_CHAOS_LOGDIR was given.
func (c *chaos) openLogDir(seed uint64) {
	t := c.t
	root, keep := os.Getenv("HYDRA_CHAOS_LOGDIR"), true
	if root == "" {
		root, keep = os.TempDir(), false
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatalf("HYDRA_CHAOS_LOGDIR: %v", err)
	}
	dir, err := os.MkdirTemp(root, fmt.Sprintf("hydra-chaos-seed%d-", seed))
	if err != nil {
		t.Fatalf("chaos log directory: %v", err)
	}
	// Every node runs as a user of its own and must reach its data directory inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.logDir = dir
	f, err := os.Create(filepath.Join(dir, "chaos.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.events = f
	// Registered first, so it runs last: after the nodes are killed and their tmpfs unmounted.
	t.Cleanup(func() {
		c.evMu.Lock()
		c.events = nil
		c.evMu.Unlock()
		_ = f.Close()
		if t.Failed() || keep {
			t.Logf("chaos logs kept in %s (nN/nN.log: each node's whole log; nN/files.txt: its data directory's files; chaos.log; peers.txt)", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	c.logf("chaos logs in %s", dir)
}

// listFiles writes each file under dir with its size to out (a failed run keeps it beside the
// node's log: its data directory is a tmpfs unmounted at the end).
func listFiles(t *testing.T, dir, out string) {
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			rel, _ := filepath.Rel(dir, path)
			fmt.Fprintf(&b, "%12d %s\n", fi.Size(), rel)
		}
		return nil
	})
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Logf("list %s: %v", dir, err)
	}
}

// peerMap names each node's peer ID, which is all the nodes' own logs call each other.
func (c *chaos) peerMap() string {
	var b strings.Builder
	for _, p := range c.ps {
		fmt.Fprintf(&b, "%s %s uid %d api %s p2p %d\n", p.name, p.id, p.uid, p.api, p.p2pPort)
	}
	return b.String()
}

// fail records the first invariant broken; the run stops at its next check.
func (c *chaos) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failure == nil {
		c.failure = err
		line := fmt.Sprintf("[%7.1fs] INVARIANT BROKEN: %v", time.Since(c.start).Seconds(), err)
		c.t.Log(line)
		c.event(line)
	}
}

// startCluster starts n nodes, each with its data directory on a disk of its own (newChaosDisk; 256 MiB: a
// node starts with 64 MiB free, and each time a follower's log suffix is cleared raft-wal seals
// its segment and preallocates a new 16 MiB one, kept until compaction passes it: a 160 MiB
// tmpfs left a node of seed 19 with 57.5 MiB free after four such clears), joined to the first one, and waits until they form one cluster with three voters.
func (c *chaos) startCluster(n int) {
	t := c.t
	base := c.logDir
	// Every node runs as a user of its own (cutRules matches its packets by owner): the
	// binary and the directories above the data dirs must be theirs to reach.
	if err := os.Chmod(filepath.Dir(hydraBinary(t)), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		c.mu.Lock()
		var faults []string
		for p, kind := range c.busy {
			faults = append(faults, p.name+" "+kind)
		}
		c.mu.Unlock()
		sort.Strings(faults)
		t.Logf("--- nodes ---\n%sfaults in progress: %v\nwhole logs: %s", c.peerMap(), faults, c.logDir)
		for _, p := range c.ps {
			t.Logf("--- end of the log of %s (%s; whole: %s) ---\n%s", p.name, p.id, p.logPath(), p.dumpLog())
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
		disk := newChaosDisk(t, dir, data)
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
		c.disks[p] = disk
	}
	waitFor(t, 90*time.Second, "one cluster of 5 nodes with 3 voters", func() error {
		for _, p := range c.ps {
			st, err := p.status()
			if err != nil {
				return err
			}
			p.id = st.Self.ID
			members, voters := shape(st)
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
	if err := os.WriteFile(filepath.Join(c.logDir, "peers.txt"), []byte(c.peerMap()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.logf("cluster of %d up; nodes:\n%s", n, c.peerMap())
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
		if c.busy[p] != "lid" && !downKinds[c.busy[p]] {
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
