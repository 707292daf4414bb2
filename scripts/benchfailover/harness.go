package main

// The cluster harness: node processes, their /api/v1/status, agreement and stability.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// status is the part of GET /api/v1/status this program reads.
type status struct {
	Self struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"self"`
	ClusterID string `json:"cluster_id"`
	Leader    string `json:"leader"`
	Term      uint64 `json:"term"`
	Nodes     []struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Role   string `json:"role"`
		Online bool   `json:"online"`
	} `json:"nodes"`
}

func (s *status) members() int {
	n := 0
	for _, x := range s.Nodes {
		if x.Role == "leader" || x.Role == "voter" || x.Role == "nonvoter" {
			n++
		}
	}
	return n
}

// voters returns the number of voters (leader included) and how many of them
// are online.
func (s *status) voters() (all, online int) {
	for _, x := range s.Nodes {
		if x.Role == "leader" || x.Role == "voter" {
			all++
			if x.Online {
				online++
			}
		}
	}
	return
}

func (s *status) roleOf(id string) string {
	for _, x := range s.Nodes {
		if x.ID == id {
			return x.Role
		}
	}
	return ""
}

var (
	flagHydra     = flag.String("hydra", "", "path to the hydra binary (required)")
	flagMode      = flag.String("mode", "failover", "failover or noflap")
	flagWork      = flag.String("work", "", "work directory (default: a new temporary one, removed at the end)")
	flagNodes     = flag.Int("nodes", 5, "cluster size for failover, idle and noflap")
	flagVoters    = flag.Int("voters", 3, "voters the cluster is expected to keep")
	flagRuns      = flag.Int("runs", 10, "failover runs")
	flagJoinNodes = flag.Int("join-nodes", 7, "nodes started at once for the bootstrap measurement")
	flagJoinRuns  = flag.Int("join-runs", 5, "bootstrap runs (0 to skip)")
	flagIdle      = flag.Duration("idle", 60*time.Second, "idle CPU/memory window (0 to skip)")
	flagDuration  = flag.Duration("duration", 10*time.Minute, "noflap: how long to watch")
	flagHogs      = flag.Int("hogs", 2*runtime.NumCPU(), "noflap: busy processes saturating the cores")
	flagNodeArgs  = flag.String("node-args", "", "extra flags for every hydra node (space-separated)")
	flagKeep      = flag.Bool("keep", false, "keep the work directory")
	flagStripped  = flag.String("stripped", "", "a build of the same binary with -ldflags='-s -w', for its size")
)

// ---- processes

type proc struct {
	name    string
	dataDir string
	args    []string
	logPath string
	httpURL string
	id      string
	cmd     *exec.Cmd
	done    chan struct{}
}

var (
	procsMu sync.Mutex
	procs   = map[*exec.Cmd]bool{}
)

func track(c *exec.Cmd, on bool) {
	procsMu.Lock()
	defer procsMu.Unlock()
	if on {
		procs[c] = true
	} else {
		delete(procs, c)
	}
}

// killAll SIGKILLs every process this program started and what they spawned.
func killAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	for c := range procs {
		if c.Process != nil {
			for _, d := range descendants(c.Process.Pid) {
				syscall.Kill(d, syscall.SIGKILL)
			}
			c.Process.Kill()
		}
	}
}

func startCmd(c *exec.Cmd) error {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		return err
	}
	track(c, true)
	return nil
}

func (p *proc) start() error {
	lf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "==== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	p.cmd = exec.Command(*flagHydra, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := startCmd(p.cmd); err != nil {
		lf.Close()
		return err
	}
	p.done = make(chan struct{})
	c, done := p.cmd, p.done
	go func() {
		c.Wait()
		lf.Close()
		track(c, false)
		close(done)
	}()
	return nil
}

func (p *proc) alive() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the node and everything under it, and waits for it.
func (p *proc) kill() {
	if !p.alive() {
		return
	}
	kids := descendants(p.cmd.Process.Pid)
	p.cmd.Process.Kill()
	for _, d := range kids {
		syscall.Kill(d, syscall.SIGKILL)
	}
	<-p.done
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
		f, err := readStat(c)
		if err != nil {
			continue
		}
		parent[f.ppid] = append(parent[f.ppid], c)
	}
	var out []int
	q := []int{pid}
	for len(q) > 0 {
		x := q[0]
		q = q[1:]
		for _, c := range parent[x] {
			out = append(out, c)
			q = append(q, c)
		}
	}
	return out
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, errors.New("short stat")
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
	return procStat{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}, nil
}

// cpuTicks is the CPU time of pid and its descendants (and of the children
// they reaped), in clock ticks.
func cpuTicks(pid int) int64 {
	var t int64
	for _, p := range append([]int{pid}, descendants(pid)...) {
		if s, err := readStat(p); err == nil {
			t += s.utime + s.stime + s.cutime + s.cstime
		}
	}
	return t
}

// rssKB is VmRSS of pid and its descendants (total, and pid's own), and
// how many processes that is.
func rssKB(pid int) (total, own int64, n int) {
	ps := append([]int{pid}, descendants(pid)...)
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				f := strings.Fields(l)
				if len(f) >= 2 {
					v, _ := strconv.ParseInt(f[1], 10, 64)
					total += v
					if p == pid {
						own = v
					}
				}
			}
		}
	}
	return total, own, len(ps)
}

const clkTck = 100 // USER_HZ on Linux (x86, arm)

// ---- clusters

var usedPorts = map[int]bool{}

func freePort() int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fatalf("free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !usedPorts[p] {
			usedPorts[p] = true
			return p
		}
	}
}

type cluster struct {
	dir   string
	nodes []*proc
}

// newCluster prepares n nodes under dir: identities written into their data
// directories (so every node can be given every other's /p2p/ address),
// distinct TCP and HTTP ports on 127.0.0.1.
func newCluster(dir, prefix string, n int) *cluster {
	c := &cluster{dir: dir}
	var addrs []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i+1)
		data := filepath.Join(dir, name)
		if err := os.MkdirAll(data, 0o700); err != nil {
			fatalf("%v", err)
		}
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			fatalf("key: %v", err)
		}
		raw, _ := crypto.MarshalPrivateKey(key)
		if err := os.WriteFile(filepath.Join(data, "identity.key"), raw, 0o600); err != nil {
			fatalf("%v", err)
		}
		id, _ := peer.IDFromPrivateKey(key)
		tcp, httpPort := freePort(), freePort()
		p := &proc{
			name:    name,
			dataDir: data,
			logPath: filepath.Join(dir, name+".log"),
			httpURL: fmt.Sprintf("http://127.0.0.1:%d", httpPort),
			id:      id.String(),
		}
		p.args = []string{"node", "--data", data, "--name", name,
			"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", tcp),
			"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--mdns=false"}
		if *flagNodeArgs != "" {
			p.args = append(p.args, strings.Fields(*flagNodeArgs)...)
		}
		addrs = append(addrs, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tcp, id))
		c.nodes = append(c.nodes, p)
	}
	for i, p := range c.nodes {
		for j, a := range addrs {
			if i != j {
				p.args = append(p.args, "--join", a)
			}
		}
	}
	return c
}

func (c *cluster) startAll() {
	for _, p := range c.nodes {
		if err := p.start(); err != nil {
			fatalf("start %s: %v", p.name, err)
		}
	}
}

func (c *cluster) stop() {
	for _, p := range c.nodes {
		p.kill()
	}
}

func (c *cluster) byID(id string) *proc {
	for _, p := range c.nodes {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (c *cluster) name(id string) string {
	if id == "" {
		return "-"
	}
	if p := c.byID(id); p != nil {
		return p.name
	}
	return id
}

func (c *cluster) tails(lines int) {
	for _, p := range c.nodes {
		b, _ := os.ReadFile(p.logPath)
		ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(ls) > lines {
			ls = ls[len(ls)-lines:]
		}
		fmt.Fprintf(os.Stderr, "---- %s (%s) %s\n%s\n", p.name, p.id, p.logPath, strings.Join(ls, "\n"))
	}
}

var httpc = &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

func getStatus(ctx context.Context, url string) (*status, time.Duration, error) {
	t := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/v1/status", nil)
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, time.Since(t), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, time.Since(t), err
	}
	if resp.StatusCode != 200 {
		return nil, time.Since(t), fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var s status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, time.Since(t), err
	}
	return &s, time.Since(t), nil
}

type answer struct {
	st  *status
	lat time.Duration
	err error
}

// poll asks every node in ps at once.
func poll(ps []*proc) []answer {
	out := make([]answer, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, lat, err := getStatus(context.Background(), p.httpURL)
			out[i] = answer{st, lat, err}
		}()
	}
	wg.Wait()
	return out
}

// agreement: all answered, same non-empty leader (one of ps) and cluster_id.
func agreement(ps []*proc, as []answer) (leader, cid string, term uint64, ok bool) {
	for i, a := range as {
		if a.err != nil || a.st.Leader == "" || a.st.ClusterID == "" {
			return "", "", 0, false
		}
		if i == 0 {
			leader, cid = a.st.Leader, a.st.ClusterID
		}
		if a.st.Leader != leader || a.st.ClusterID != cid {
			return "", "", 0, false
		}
		if a.st.Term > term {
			term = a.st.Term
		}
	}
	for _, p := range ps {
		if p.id == leader {
			return leader, cid, term, true
		}
	}
	return "", "", 0, false
}

func describe(c *cluster, ps []*proc, as []answer) string {
	var b strings.Builder
	for i, a := range as {
		if a.err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", ps[i].name, a.err)
			continue
		}
		v, on := a.st.voters()
		fmt.Fprintf(&b, "  %s: leader=%s term=%d cluster=%.12s members=%d voters=%d (online %d)\n",
			ps[i].name, c.name(a.st.Leader), a.st.Term, a.st.ClusterID, a.st.members(), v, on)
	}
	return b.String()
}

// waitStable waits until every node agrees on leader, term and cluster_id,
// the leader lists all of them as members with exactly want voters, all
// online (and every node online), and that holds for hold.
func waitStable(c *cluster, want int, hold, deadline time.Duration) (leader string, term uint64, err error) {
	end := time.Now().Add(deadline)
	var since time.Time
	var last []answer
	var prevL string
	var prevT uint64
	for time.Now().Before(end) {
		as := poll(c.nodes)
		last = as
		l, _, t, ok := agreement(c.nodes, as)
		if ok {
			var ls *status
			for i, p := range c.nodes {
				if p.id == l {
					ls = as[i].st
				}
			}
			v, on := ls.voters()
			online := 0
			for _, x := range ls.Nodes {
				if x.Online && x.Role != "none" {
					online++
				}
			}
			sameTerm := true
			for _, a := range as {
				if a.st.Term != t {
					sameTerm = false
				}
			}
			ok = sameTerm && ls.members() == len(c.nodes) && v == want && on == want && online == len(c.nodes)
		}
		if ok && l == prevL && t == prevT && !since.IsZero() {
			if time.Since(since) >= hold {
				return l, t, nil
			}
		} else if ok {
			since, prevL, prevT = time.Now(), l, t
		} else {
			since, prevL, prevT = time.Time{}, "", 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", 0, fmt.Errorf("no stable cluster (all agree, %d members, %d voters online) within %v; last views:\n%s", len(c.nodes), want, deadline, describe(c, c.nodes, last))
}

// ---- measurements
