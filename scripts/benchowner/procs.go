//go:build linux

package main

// Processes: the hydra node and the owner's load processes, tracked (scripts/internal/procluster)
// so that every one of them is killed on exit; CPU accounting from /proc.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/localport"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
	"github.com/hydra-compute/hydra/webui"
)

// treeCPU returns the CPU seconds of pid alone and of its descendants (with what they reaped).
func treeCPU(pid int) (own, kids float64) {
	if st, err := procluster.ReadStat(pid); err == nil {
		own = st.CPU()
	}
	for _, d := range procluster.Descendants(pid) {
		if st, err := procluster.ReadStat(d); err == nil {
			kids += st.CPU() + st.Reaped()
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
	return busy / procluster.ClockTick, steal / procluster.ClockTick, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// ---- the hydra node

// node is one `hydra node` process on loopback, never on the real network (--mdns=false,
// --dht=false, 127.0.0.1 only).
type node struct {
	*procluster.Proc
	api   *webui.Client
	token string
}

// newNode prepares a node in dir with the owner flags extra.
func newNode(bin, dir string, extra ...string) (*node, error) {
	p2pPort, err := localport.Free()
	if err != nil {
		return nil, err
	}
	httpPort, err := localport.Free()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("node data dir: %w", err)
	}
	args := append([]string{"node", "--data", dir, "--name", "owner-bench", "--mdns=false", "--dht=false",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--log-level", "info"}, extra...)
	url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	p := &procluster.Proc{Name: "owner-bench", Bin: bin, Args: args, DataDir: dir, LogPath: dir + ".log", HTTPURL: url}
	return &node{Proc: p, api: webui.NewClient(url, "")}, nil
}

// start starts the node (again, with the same data) and waits until it leads its one-node
// cluster and its API token is written.
func (n *node) start(ctx context.Context) error {
	if err := n.Start(); err != nil {
		return err
	}
	return poll(ctx, 60*time.Second, "the node leads its cluster and has an API token", func() error {
		if !n.Alive() {
			return errStop{fmt.Errorf("node exited; see %s", n.LogPath)}
		}
		st, err := n.status(ctx)
		if err != nil {
			return err
		}
		if st.Leader == "" || st.Leader != st.Self.ID {
			return fmt.Errorf("leader %q", st.Leader)
		}
		tok, err := os.ReadFile(filepath.Join(n.DataDir, "api-token"))
		if err != nil || strings.TrimSpace(string(tok)) == "" {
			return fmt.Errorf("no API token yet: %v", err)
		}
		n.token = strings.TrimSpace(string(tok))
		n.api.Token = n.token
		return nil
	})
}

// stop ends the node gracefully (SIGTERM: it hands in its chunk's finished prefix), then
// SIGKILLs it and its descendants if it lingers.
func (n *node) stop() { n.Stop(15 * time.Second) }

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
	_, kids := treeCPU(n.PID())
	return kids
}

// waitComputing waits until the job has accepted work and the compute child is burning CPU.
func (n *node) waitComputing(ctx context.Context, id string) error {
	c0 := n.computeCPU()
	return poll(ctx, 120*time.Second, "the node computes job "+id, func() error {
		if !n.Alive() {
			return errStop{fmt.Errorf("node exited; see %s", n.LogPath)}
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
