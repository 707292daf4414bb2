package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/atomicfile"
	"github.com/hydra-compute/hydra/internal/childproc"
	"github.com/hydra-compute/hydra/internal/localport"
	"github.com/hydra-compute/hydra/node"
	"github.com/hydra-compute/hydra/webui"
)

// demoNode is one node process of the demo cluster.
type demoNode struct {
	name, dir, api string
	id, joinAddr   string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// runDemo starts a local cluster of real node processes, runs a π and a
// Mandelbrot job, SIGKILLs the coordinator in the middle, and shows the
// results and each node's share. It is the README's "run" command.
func runDemo(args []string, stdout, stderr io.Writer) (retErr error) {
	fs := newFlagSet("demo", stdout)
	nodes := fs.Int("nodes", 4, "node processes to start")
	keep := fs.Bool("keep", false, "leave the cluster running after the jobs (Ctrl-C stops it)")
	samples := fs.Float64("samples", 2e10, "π samples")
	width := fs.Int("width", 1600, "Mandelbrot width (height is 9/16 of it)")
	out := fs.String("o", "hydra-demo.png", "where to write the Mandelbrot picture")
	dir := fs.String("dir", "", "directory for the nodes' data (default: a new temporary one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *nodes < 3 || *nodes > 9 {
		return usagef("--nodes %d: want 3 to 9", *nodes)
	}
	if *samples < 1 || *samples > 1e15 || *samples != math.Trunc(*samples) {
		return usagef("--samples %g: want a whole number from 1 to 1e15", *samples)
	}
	if *width < 16 || *width > 16384 {
		return usagef("--width %d: want 16 to 16384", *width)
	}
	// The picture comes last: a place it cannot go is said now, not after the run.
	probe, err := atomicfile.CreateLike(*out, ".hydra-")
	if err != nil {
		return usagef("-o %s: %v", *out, err)
	}
	probe.Abort()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	base := *dir
	ownDir := base == "" // a directory of our own is removed once the nodes stop, unless a failure needs its logs
	if ownDir {
		if base, err = os.MkdirTemp("", "hydra-demo-"); err != nil {
			return fmt.Errorf("make the demo's data directory: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()

	var cluster []*demoNode
	defer func() {
		if *keep && ctx.Err() == nil && retErr == nil {
			return
		}
		if retErr != nil && ctx.Err() != nil {
			retErr = errors.New("interrupted: the demo's nodes are stopped")
		}
		for _, d := range cluster {
			d.stop()
		}
		switch {
		case retErr != nil && ctx.Err() == nil:
			fmt.Fprintf(stderr, "hydra demo: the nodes' data and logs are kept in %s\n", base)
		case ownDir:
			if err := os.RemoveAll(base); err != nil {
				fmt.Fprintf(stderr, "hydra demo: remove %s: %v\n", base, err)
			}
		}
	}()
	fmt.Fprintf(stdout, "Starting %d nodes on this machine (data in %s)…\n", *nodes, base)
	limits := []int{100, 70, 45, 30, 100, 70, 45, 30, 100}
	var join string
	for i := range *nodes {
		d, err := startDemoNode(ctx, exe, base, i, limits[i], join)
		if err != nil {
			return err
		}
		cluster = append(cluster, d)
		if i == 0 {
			if err := d.waitID(ctx, 20*time.Second); err != nil {
				return err
			}
			join = d.joinAddr
		}
	}
	c := webui.NewClient(cluster[0].api, "")
	leader, err := waitCluster(ctx, c, *nodes, 60*time.Second)
	if err != nil {
		return err
	}
	if st, err := c.Status(ctx); err == nil {
		for _, n := range st.Nodes {
			for _, d := range cluster {
				if d.name == n.Name {
					d.id = n.ID
				}
			}
		}
	}
	// The node writes the token a moment after it learns it: the cluster
	// may be formed before that.
	var tok []byte
	if err := poll(ctx, 20*time.Second, "the API token in "+cluster[0].dir, func() error {
		var err error
		if tok, err = os.ReadFile(filepath.Join(cluster[0].dir, node.TokenFile)); err == nil && len(strings.TrimSpace(string(tok))) == 0 {
			err = errors.New("empty")
		}
		return err
	}); err != nil {
		return fmt.Errorf("read API token: %w", err)
	}
	c.Token = strings.TrimSpace(string(tok))
	fmt.Fprintf(stdout, "Cluster formed: %d nodes, coordinator %s.\n", *nodes, nameOf(cluster, leader))
	fmt.Fprintf(stdout, "Web UI: %s/?token=%s\n\n", cluster[1].api, c.Token)

	piID, err := submit(ctx, c, map[string]any{"kind": "pi", "samples": uint64(*samples), "seed": "7", "name": "demo-pi"})
	if err != nil {
		return err
	}
	h := *width * 9 / 16
	mbID, err := submit(ctx, c, map[string]any{"kind": "mandelbrot", "width": *width, "height": h, "center_x": -0.743643887,
		"center_y": 0.131825904, "span": 0.0002, "max_iter": 3000, "name": "demo-mandelbrot"})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Submitted π (%g samples, job %s) and Mandelbrot (%d×%d, job %s).\n", *samples, piID, *width, h, mbID)

	// Kill the coordinator once the π job is a third done.
	killed := false
	for !killed {
		j, err := getJob(ctx, c, piID)
		if err != nil {
			return err
		}
		if j.State.Finished() {
			break
		}
		if float64(j.DoneUnits) >= float64(j.TotalUnits)/3 {
			st, err := c.Status(ctx)
			if err == nil && st.Leader != "" {
				victim := byNodeID(cluster, st.Leader)
				if victim != nil {
					fmt.Fprintf(stdout, "π is %d%% done: SIGKILL the coordinator %s…\n", j.DoneUnits*100/j.TotalUnits, victim.name)
					_ = victim.cmd.Process.Signal(syscall.SIGKILL)
					<-victim.exited
					killed = true
					c = webui.NewClient(firstAlive(cluster).api, c.Token)
					t0 := time.Now()
					nl, err := waitNewLeader(ctx, c, st.Leader, 30*time.Second)
					if err != nil {
						return err
					}
					fmt.Fprintf(stdout, "New coordinator %s after %s; the jobs go on.\n", nameOf(cluster, nl), time.Since(t0).Round(time.Millisecond))
				}
			}
		}
		if err := pause(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	st, _ := c.Status(ctx)
	names := map[string]string{}
	for _, n := range st.Nodes {
		names[n.ID] = n.Name
	}
	for _, id := range []string{piID, mbID} {
		j, err := waitJob(ctx, c, id)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout)
		switch j.Spec.Kind {
		case compute.KindPi:
			var r compute.PiResult
			if err := c.Do(ctx, "GET", "/api/v1/jobs/"+id+"/result", nil, &r); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "π ≈ %.10f ± %.2g   (%d hits of %d samples, %s)\n", r.Estimate, r.StdError, r.Hits, r.Samples, j.FinishedAt.Sub(j.SubmittedAt).Round(time.Millisecond))
		case compute.KindMandelbrot:
			err := writeOutput(*out, func(w io.Writer) error { // streamed: a 16384-wide picture is large
				_, err := c.Download(ctx, "/api/v1/jobs/"+id+"/result.png", w)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Mandelbrot written to %s   (%s)\n", *out, j.FinishedAt.Sub(j.SubmittedAt).Round(time.Millisecond))
		}
		printShares(stdout, j, names)
	}
	if *keep {
		// Only a cluster that keeps running has a web address worth showing again.
		fmt.Fprintf(stdout, "\nWeb UI: %s/?token=%s\n", firstAlive(cluster).api, c.Token)
		fmt.Fprintf(stdout, "The cluster keeps running (--keep); data in %s. Stop it with Ctrl-C.\n", base)
		<-ctx.Done() // the deferred stop ends the nodes (and removes a directory of our own)
	}
	return nil
}

func printShares(w io.Writer, j webui.JobView, names map[string]string) {
	nodes := append([]webui.ContributionView(nil), j.Nodes...)
	sort.Slice(nodes, func(a, b int) bool { return nodes[a].Units > nodes[b].Units })
	for _, n := range nodes {
		name := names[n.Node]
		if name == "" {
			name = short(n.Node)
		}
		share := 0.0
		if j.TotalUnits > 0 {
			share = 100 * float64(n.Units) / float64(j.TotalUnits)
		}
		fmt.Fprintf(w, "  %-10s %5.1f%%  %6d chunks  %7.1f s of compute\n", name, share, n.Chunks, n.ComputeSeconds)
	}
}

func startDemoNode(ctx context.Context, exe, base string, i, cpuLimit int, join string) (*demoNode, error) {
	p2pPort, err := localport.Free()
	if err != nil {
		return nil, err
	}
	httpPort, err := localport.Free()
	if err != nil {
		return nil, err
	}
	d := &demoNode{name: fmt.Sprintf("demo-%d", i+1), dir: filepath.Join(base, fmt.Sprintf("node%d", i+1)), exited: make(chan struct{})}
	d.api = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	// --admit lan: the demo's nodes on loopback admit each other with no approval.
	args := []string{"node", "--data", d.dir, "--name", d.name, "--mdns=false", "--dht=false", "--admit", "lan",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--cpus", "1", "--cpu-limit", fmt.Sprint(cpuLimit), "--log-format", "json",
		"--dedicated"} // the demo's nodes share one machine: they are each other's "owner load"
	if join != "" {
		args = append(args, "--join", join)
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(d.dir, "node.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(exe, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// The demo's nodes end with it even when it is killed outright (SIGKILL, a crash), where
	// the kernel can: on a SIGINT or SIGTERM the demo stops them itself.
	if err := childproc.Start(d.cmd, d.exited); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", d.name, err)
	}
	go func() { _ = d.cmd.Wait(); logf.Close(); close(d.exited) }()
	d.joinAddr = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort)
	return d, nil
}

func (d *demoNode) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop ends the node gracefully (SIGTERM), then for good.
func (d *demoNode) stop() {
	if !d.alive() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// waitID waits for the node's API and learns its peer ID.
func (d *demoNode) waitID(ctx context.Context, limit time.Duration) error {
	c := webui.NewClient(d.api, "")
	return poll(ctx, limit, "node "+d.name+" to start (see "+filepath.Join(d.dir, "node.log")+")", func() error {
		if !d.alive() {
			return errors.New("node exited; see " + filepath.Join(d.dir, "node.log"))
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		d.id = st.Self.ID
		d.joinAddr += "/p2p/" + d.id
		return nil
	})
}

// poll calls f until it succeeds or limit passes.
func poll(ctx context.Context, limit time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s: %w", what, err)
		}
		if err := pause(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitCluster waits until the node behind c sees size online members and a
// leader, and returns the leader's ID.
func waitCluster(ctx context.Context, c *webui.Client, size int, limit time.Duration) (string, error) {
	var leader string
	err := poll(ctx, limit, fmt.Sprintf("a cluster of %d nodes", size), func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		online, voters := 0, 0
		for _, n := range st.Nodes {
			if n.Online && n.Role != webui.RoleNone {
				online++
			}
			if n.Online && (n.Role == webui.RoleLeader || n.Role == webui.RoleVoter) {
				voters++
			}
		}
		// Three voters first: a cluster survives the loss of its leader
		// only once its vote is shared.
		if st.Leader == "" || online < size || voters < min(3, size) {
			return fmt.Errorf("%d of %d members online, %d voters, leader %q", online, size, voters, st.Leader)
		}
		leader = st.Leader
		return nil
	})
	return leader, err
}

func waitNewLeader(ctx context.Context, c *webui.Client, old string, limit time.Duration) (string, error) {
	var leader string
	err := poll(ctx, limit, "a new coordinator", func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Leader == "" || st.Leader == old {
			return errors.New("no new leader yet")
		}
		leader = st.Leader
		return nil
	})
	return leader, err
}

func byNodeID(cluster []*demoNode, id string) *demoNode {
	for _, d := range cluster {
		if d.id == id && d.alive() {
			return d
		}
	}
	return nil
}

func nameOf(cluster []*demoNode, id string) string {
	for _, d := range cluster {
		if d.id == id {
			return d.name
		}
	}
	return short(id)
}

func firstAlive(cluster []*demoNode) *demoNode {
	for _, d := range cluster {
		if d.alive() {
			return d
		}
	}
	return cluster[0]
}

func submit(ctx context.Context, c *webui.Client, body map[string]any) (string, error) {
	var j struct {
		ID string `json:"id"`
	}
	if err := c.Do(ctx, "POST", "/api/v1/jobs", body, &j); err != nil {
		return "", fmt.Errorf("submit %s job: %w", body["kind"], err)
	}
	return j.ID, nil
}

func getJob(ctx context.Context, c *webui.Client, id string) (webui.JobView, error) {
	var j webui.JobView
	err := c.Do(ctx, "GET", "/api/v1/jobs/"+id, nil, &j)
	return j, err
}

// waitJob waits for a job to finish; cancelled is an error.
func waitJob(ctx context.Context, c *webui.Client, id string) (webui.JobView, error) {
	for {
		j, err := getJob(ctx, c, id)
		if err == nil && j.State.Finished() {
			if j.State != compute.StateDone {
				return j, fmt.Errorf("job %s ended %s", id, j.State)
			}
			return j, nil
		}
		if err := pause(ctx, 250*time.Millisecond); err != nil {
			return j, err
		}
	}
}
