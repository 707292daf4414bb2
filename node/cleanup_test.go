package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// goroutineSlack is how many goroutines more than before a test may leave once what it made is
// closed: a few of the runtime's and the libraries' own come and go (timers, an idle HTTP
// connection's reader). A node made by New runs a few dozen before it even runs.
const goroutineSlack = 8

// settleGoroutines waits until the process runs at most limit goroutines and returns how many
// it runs then; past the deadline it fails the test with the goroutines that are left.
func settleGoroutines(t *testing.T, limit int, what string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		g := runtime.NumGoroutine()
		if g <= limit {
			return g
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%s: %d goroutines still run, want at most %d:\n%s", what, g, limit, b.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a count: nothing to wait on
	}
}

// closedNodeLeavesNothing checks that a node made in dir, serving HTTP on httpAddr, released
// everything: the lock on its data directory, its HTTP port, and its goroutines (at most
// before plus goroutineSlack run).
func closedNodeLeavesNothing(t *testing.T, dir, httpAddr string, before int) {
	t.Helper()
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("the data directory is still locked: %v", err)
	}
	unlock()
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("the HTTP port %s is still bound: %v", httpAddr, err)
	}
	ln.Close()
	after := settleGoroutines(t, before+goroutineSlack, "after the node was closed")
	t.Logf("goroutines: %d before the node, %d after it was closed", before, after)
}

// warmGoroutines makes a node and closes it, so that what libraries start once per process
// (and never stop) runs before a test counts goroutines; it returns the count after.
func warmGoroutines(t *testing.T) int {
	t.Helper()
	n, err := New(context.Background(), testConfig(t.TempDir(), "warm"))
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	return runtime.NumGoroutine()
}

// TestTestNodeNeverRunIsClosedWithItsTest: a node a test makes with newTestNode and never runs
// (the module-store tests do: they need New alone) is closed when its test ends. New already
// runs raft and the libp2p host; before, nothing stopped them, so each such test left a node
// running (its goroutines, its ports, the lock on its data directory) for the rest of the
// package's tests.
func TestTestNodeNeverRunIsClosedWithItsTest(t *testing.T) {
	before := warmGoroutines(t)
	dir := t.TempDir()
	var httpAddr string
	var during int
	t.Run("made, never run", func(t *testing.T) {
		n := newTestNode(t, dir, "n0", func(c *Config) { c.Compute = false })
		httpAddr = n.httpLn.Addr().String()
		during = runtime.NumGoroutine()
	})
	t.Logf("goroutines while the node existed: %d", during)
	if during <= before+goroutineSlack {
		t.Fatalf("a node made by New runs %d goroutines, %d before: this test cannot tell a leak", during, before)
	}
	closedNodeLeavesNothing(t, dir, httpAddr, before)
}

// TestCloseReleasesANodeThatNeverRan: Close releases what New opened (raft, the host, the job
// state, the HTTP listener, the data directory's lock); Run after Close refuses to start, a
// second Close does nothing, and a Close after Run (which released everything itself) does
// nothing either: a node made again on the directory starts.
func TestCloseReleasesANodeThatNeverRan(t *testing.T) {
	before := warmGoroutines(t)
	dir := t.TempDir()
	n, err := New(context.Background(), testConfig(dir, "n0"))
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := n.httpLn.Addr().String()
	n.Close()
	n.Close()
	closedNodeLeavesNothing(t, dir, httpAddr, before)
	if err := n.Run(context.Background()); !errors.Is(err, errClosed) {
		t.Fatalf("Run after Close: %v, want %v", err, errClosed)
	}

	ran := newTestNode(t, dir, "n0", nil)
	ran.start(t)
	waitFor(t, 20*time.Second, "the node leads", func() error {
		if !ran.raft.IsLeader() {
			return fmt.Errorf("not leading")
		}
		return nil
	})
	ran.stop(t)
	ran.Close() // after Run: nothing left to release, and nothing released twice
	again := newTestNode(t, dir, "n0", nil)
	again.start(t)
	waitFor(t, 20*time.Second, "the node made again leads", func() error {
		if !again.raft.IsLeader() {
			return fmt.Errorf("not leading")
		}
		return nil
	})
}

// TestClosedNodeLeavesIdleProcs: a node whose replay applied jobs (which counts it busy in the
// process's idle-P bookkeeping, procs) and that is then closed without running leaves procs
// again, as a node that ran does. Before, only Run forgot it: the closed node stayed there for
// good, busy, so the process never ran idle on one P again, and held the node's memory.
func TestClosedNodeLeavesIdleProcs(t *testing.T) {
	dir := t.TempDir()
	first := newTestNode(t, dir, "n0", func(c *Config) { c.Compute = false })
	first.start(t)
	waitFor(t, 20*time.Second, "the node leads", func() error {
		if !first.raft.IsLeader() {
			return fmt.Errorf("not leading")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := first.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000, Seed: 1}}); err != nil {
		t.Fatal(err)
	}
	first.stop(t)

	held := func(n *Node) bool {
		procs.mu.Lock()
		defer procs.mu.Unlock()
		_, ok := procs.nodes[n]
		return ok
	}
	again, err := New(context.Background(), testConfig(dir, "n0")) // replays the submit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Close)
	waitFor(t, 20*time.Second, "the replay counted in procs", func() error {
		if !held(again) {
			return fmt.Errorf("not counted")
		}
		return nil
	})
	again.Close()
	if held(again) {
		t.Fatal("a node closed without running stays counted busy in procs")
	}
}

// TestFailedHTTPServerStopsRunWithAnError: a node whose HTTP listener fails (here closed under
// it, as any accept error that is not temporary ends net/http's Serve) stops with an error.
// Before, Run returned nil, a clean stop: `hydra node` exited 0, which the service unit
// (Restart=on-failure) does not restart, so the node stayed down for good.
func TestFailedHTTPServerStopsRunWithAnError(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- n.Run(ctx) }()
	waitFor(t, 20*time.Second, "the node serving HTTP", func() error {
		_, err := getStatus(n)
		return err
	})
	if err := n.httpLn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err == nil {
			t.Fatal("Run returned nil after its HTTP server failed: a clean stop, which no supervisor restarts")
		}
		if ce := (*ConfigError)(nil); errors.As(err, &ce) {
			t.Fatalf("Run returned a *ConfigError (exit code 78, not restarted): %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not stop after its HTTP server failed")
	}
}
