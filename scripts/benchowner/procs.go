package main

// Processes: the hydra node and the owner's load processes, tracked so that every one of them
// is killed on exit; CPU accounting from /proc.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

var (
	procsMu sync.Mutex
	procs   = map[*exec.Cmd]bool{}
)

// startTracked starts c, SIGKILLed by the kernel if this program dies, and remembers it for
// killAll. It stays in this program's process group, which scripts/bench-owner kills whole.
func startTracked(c *exec.Cmd) error {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	procsMu.Lock()
	defer procsMu.Unlock()
	if err := c.Start(); err != nil {
		return err
	}
	procs[c] = true
	return nil
}

func untrack(c *exec.Cmd) {
	procsMu.Lock()
	defer procsMu.Unlock()
	delete(procs, c)
}

// killAll SIGKILLs every process this program started and every descendant (the node's
// compute child).
func killAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	for c := range procs {
		if c.Process == nil {
			continue
		}
		kids := descendants(c.Process.Pid)
		_ = c.Process.Kill()
		for _, d := range kids {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
	}
}

// descendants lists the PIDs under pid (children, grandchildren, …).
func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int][]int{}
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(c); err == nil {
			parent[st.ppid] = append(parent[st.ppid], c)
		}
	}
	var out []int
	for q := []int{pid}; len(q) > 0; q = q[1:] {
		for _, c := range parent[q[0]] {
			out = append(out, c)
			q = append(q, c)
		}
	}
	return out
}

type procStat struct {
	ppid   int
	cpu    float64 // utime+stime, seconds
	reaped float64 // cutime+cstime, seconds
}

// clockTick is USER_HZ, 100 on every Linux ABI Go supports.
const clockTick = 100

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(k int) float64 { v, _ := strconv.ParseFloat(f[k-3], 64); return v }
	return procStat{ppid: int(num(4)), cpu: (num(14) + num(15)) / clockTick, reaped: (num(16) + num(17)) / clockTick}, nil
}

// treeCPU returns the CPU seconds of pid alone and of its descendants (with what they reaped).
func treeCPU(pid int) (own, kids float64) {
	if st, err := readStat(pid); err == nil {
		own = st.cpu
	}
	for _, d := range descendants(pid) {
		if st, err := readStat(d); err == nil {
			kids += st.cpu + st.reaped
		}
	}
	return own, kids
}

// machineCPU returns the busy and stolen CPU seconds of the whole machine (/proc/stat); busy
// leaves out idle, iowait and steal (time a hypervisor gave to other guests).
func machineCPU() (busy, steal float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i := 1; i < len(f) && i <= 8; i++ { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		switch i {
		case 4, 5:
		case 8:
			steal = v
		default:
			busy += v
		}
	}
	return busy / clockTick, steal / clockTick, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ---- the hydra node

// node is one `hydra node` process on loopback, never on the real network (--mdns=false,
// --dht=false, 127.0.0.1 only).
type node struct {
	bin, dir, logPath string
	args              []string
	api               *webui.Client
	cmd               *exec.Cmd
	done              chan struct{}
	token             string
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newNode prepares a node in dir with the owner flags extra.
func newNode(bin, dir string, extra ...string) (*node, error) {
	p2pPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("node data dir: %w", err)
	}
	args := append([]string{"node", "--data", dir, "--name", "owner-bench", "--mdns=false", "--dht=false",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--log-level", "info"}, extra...)
	return &node{bin: bin, dir: dir, logPath: dir + ".log", args: args,
		api: webui.NewClient(fmt.Sprintf("http://127.0.0.1:%d", httpPort), "")}, nil
}

// start starts the node (again, with the same data) and waits until it leads its one-node
// cluster and its API token is written.
func (n *node) start(ctx context.Context) error {
	lf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node log: %w", err)
	}
	fmt.Fprintf(lf, "==== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(n.args, " "))
	n.cmd = exec.Command(n.bin, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	if err := startTracked(n.cmd); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", n.bin, err)
	}
	n.done = make(chan struct{})
	c, done := n.cmd, n.done
	go func() {
		_ = c.Wait()
		lf.Close()
		untrack(c)
		close(done)
	}()
	return poll(ctx, 60*time.Second, "the node leads its cluster and has an API token", func() error {
		if !n.alive() {
			return errStop{fmt.Errorf("node exited; see %s", n.logPath)}
		}
		st, err := n.status(ctx)
		if err != nil {
			return err
		}
		if st.Leader == "" || st.Leader != st.Self.ID {
			return fmt.Errorf("leader %q", st.Leader)
		}
		tok, err := os.ReadFile(filepath.Join(n.dir, "api-token"))
		if err != nil || strings.TrimSpace(string(tok)) == "" {
			return fmt.Errorf("no API token yet: %v", err)
		}
		n.token = strings.TrimSpace(string(tok))
		n.api.Token = n.token
		return nil
	})
}

func (n *node) alive() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (n *node) pid() int { return n.cmd.Process.Pid }

// stop ends the node gracefully (SIGTERM: it hands in its chunk's finished prefix), then
// SIGKILLs it and its descendants if it lingers.
func (n *node) stop() {
	if !n.alive() {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
	}
	kids := descendants(n.pid())
	_ = n.cmd.Process.Kill()
	for _, d := range kids {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	<-n.done
}

func (n *node) status(ctx context.Context) (webui.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return n.api.Status(ctx)
}

// selfState returns the node's own state and reason from its status.
func (n *node) selfState(ctx context.Context) (state, reason string, err error) {
	st, err := n.status(ctx)
	if err != nil {
		return "", "", err
	}
	for _, x := range st.Nodes {
		if x.ID == st.Self.ID {
			return x.State, x.Reason, nil
		}
	}
	return "", "", errors.New("the node does not list itself")
}

// submitPi submits a π job far larger than the benchmark and returns its ID.
func (n *node) submitPi(ctx context.Context, samples, seed uint64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := n.api.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: samples, Seed: seed}})
	if err != nil {
		return "", fmt.Errorf("submit π job: %w", err)
	}
	return v.ID, nil
}

func (n *node) job(ctx context.Context, id string) (webui.JobView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return n.api.Job(ctx, id)
}

// units returns the job's accepted units.
func (n *node) units(ctx context.Context, id string) (uint64, error) {
	j, err := n.job(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("job %s: %w", id, err)
	}
	return j.DoneUnits, nil
}

// computeCPU is the CPU seconds of the node's compute child (and anything else under the node).
func (n *node) computeCPU() float64 {
	_, kids := treeCPU(n.pid())
	return kids
}

// waitComputing waits until the job has accepted work and the compute child is burning CPU.
func (n *node) waitComputing(ctx context.Context, id string) error {
	c0 := n.computeCPU()
	return poll(ctx, 120*time.Second, "the node computes job "+id, func() error {
		if !n.alive() {
			return errStop{fmt.Errorf("node exited; see %s", n.logPath)}
		}
		j, err := n.job(ctx, id)
		if err != nil {
			return err
		}
		if c := n.computeCPU(); j.DoneUnits == 0 || c-c0 < 0.1 {
			return fmt.Errorf("%d units done, compute child %.2f CPU-s", j.DoneUnits, c-c0)
		}
		return nil
	})
}

// errStop makes poll give up at once.
type errStop struct{ error }

// poll calls cond every 100 ms until it returns nil, returns errStop, ctx ends or limit passes.
func poll(ctx context.Context, limit time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(limit)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return fmt.Errorf("waiting until %s: %w", what, stop.error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting until %s: gave up after %v: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting until %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}
