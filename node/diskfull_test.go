//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/localport"
	"github.com/hydra-compute/hydra/internal/syncbuf"
	"github.com/hydra-compute/hydra/internal/testdisk"
	"github.com/hydra-compute/hydra/webui"
)

// TestRestartOnAFullDiskWaitsForSpace: a node whose result store hits a full disk stops (a
// committed entry it cannot store: consensus.LocalFailure); started again on the still-full
// disk, it waits for space, taking no work, instead of replaying its log up to the same entry
// and stopping again; once space is back it starts, replays, and finishes the job. Before, the
// restart stopped again at the same entry within seconds, so a supervisor (hydra.service:
// Restart=on-failure) restarted the node every few seconds for as long as the disk was full.
// While it waits, its HTTP address answers 503 with the reason (`hydra status` prints it,
// where it said only that the node was unreachable), and once it starts, the same address
// serves its API.

// diskFillJob is the job the full-disk tests run while they fill the disk: a million pixels of
// cheap rows, so that its results keep coming and one of them meets the full disk.
var diskFillJob = compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: 1000, Height: 1000, CenterX: -0.5, CenterY: 0, Span: 3, MaxIter: 50}}

func TestRestartOnAFullDiskWaitsForSpace(t *testing.T) {
	dir := testdisk.Small(t, "64m")
	n := newTestNode(t, dir, "n0", func(c *Config) { c.minFreeBytes = 4 << 20 })
	n.start(t)
	waitForToken(t, n.Node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := n.SubmitJob(ctx, diskFillJob)
	if err != nil {
		t.Fatal(err)
	}
	testdisk.Fill(t, dir)
	select {
	case err := <-n.done:
		n.cancel = nil
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("the node stopped with %v, want a failure to store a result (ENOSPC)", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the node did not stop on a full disk")
	}

	var logs syncbuf.Buffer
	cfg := n.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	var n2 *Node // what the second New made, once made is closed
	var n2Err error
	made := make(chan struct{})
	startCtx, stopStart := context.WithCancel(context.Background())
	go func() {
		defer close(made)
		n2, n2Err = New(startCtx, cfg)
	}()
	// A failed test neither leaves New waiting for space nor the node it made running.
	t.Cleanup(func() {
		stopStart()
		select {
		case <-made:
			if n2 != nil {
				n2.Close() // nothing once it ran: Run released it
			}
		case <-time.After(30 * time.Second):
			t.Error("New did not return after its context ended")
		}
	})
	waitFor(t, 20*time.Second, "the restarted node to wait for space", func() error {
		select {
		case <-made:
			t.Fatalf("the restart on a full disk did not wait for space (New: %v)", n2Err)
		default:
		}
		if !strings.Contains(logs.String(), "disk full") {
			return errors.New("no disk full in its log")
		}
		return nil
	})
	// Meanwhile its HTTP address (the log names it) says why the node is not up, and so does
	// `hydra status`: one line, exit 1.
	api := regexp.MustCompile(`api=(http://\S+)`).FindStringSubmatch(logs.String())
	if api == nil {
		t.Fatalf("the disk full log names no api address: %s", logs.String())
	}
	checkDiskWaitView(t, api[1], dir, 4<<20)
	out, err := hydraCLI(t, 60*time.Second, "status", "--api", api[1])
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Count(strings.TrimSpace(out), "\n") != 0 ||
		!strings.Contains(out, "waiting for disk space") || !strings.Contains(out, dir) {
		t.Fatalf("hydra status on the waiting node: %v %q, want exit 1 and one line with the reason", err, out)
	}
	t.Logf("hydra status on the waiting node: %s", out)

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-made:
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not start once space was back")
	}
	if n2Err != nil {
		t.Fatalf("start once space was back: %v", n2Err)
	}
	tn := &testNode{Node: n2, dir: dir, done: make(chan error, 1)}
	if tn.HTTPURL() != api[1] {
		t.Fatalf("the node serves %s, the waiting view %s: want the same address", tn.HTTPURL(), api[1])
	}
	tn.start(t)
	waitFor(t, 30*time.Second, "the real API on the address of the waiting view", func() error {
		sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer scancel()
		st, err := webui.NewClient(api[1], "").Status(sctx)
		if err != nil {
			return err
		}
		if st.Self.ID != tn.ID().String() {
			return fmt.Errorf("status of %s, want %s", st.Self.ID, tn.ID())
		}
		return nil
	})
	waitFor(t, 60*time.Second, "the job done after the restart", func() error {
		select {
		case err := <-tn.done:
			tn.cancel = nil
			t.Fatalf("the restarted node stopped: %v", err)
		default:
		}
		if got, ok := tn.Job(j.ID); !ok || got.State != compute.StateDone {
			return fmt.Errorf("job %v %v", ok, got.State)
		}
		return nil
	})
}

// TestServeResumesAfterAFullDisk: `hydra node` (Serve) whose node stopped on a full disk makes
// it again in the same process: it waits for space, its HTTP address saying why, and once space
// is back the node replays its log on the same address and finishes the job. Before, the process
// exited, and only a supervisor brought the node back (a node started by hand stayed down).
func TestServeResumesAfterAFullDisk(t *testing.T) {
	dir := testdisk.Small(t, "64m")
	port, err := localport.Free()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir, "n0")
	cfg.minFreeBytes = 4 << 20
	cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", port)
	var logs syncbuf.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	notServed := func() {
		select {
		case err := <-served:
			t.Fatalf("Serve returned: %v\n%s", err, logs.String())
		default:
		}
	}
	api := "http://" + cfg.HTTPAddr
	var c *webui.Client
	waitFor(t, 30*time.Second, "the node's API", func() error {
		notServed()
		tok, err := os.ReadFile(filepath.Join(dir, TokenFile))
		if err != nil {
			return err
		}
		c = webui.NewClient(api, strings.TrimSpace(string(tok)))
		sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer scancel()
		_, err = c.Status(sctx)
		return err
	})
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	j, err := c.SubmitJob(sctx, diskFillJob)
	if err != nil {
		t.Fatal(err)
	}
	testdisk.Fill(t, dir)
	waitFor(t, 60*time.Second, "the node to stop on the full disk and wait for space in the same process", func() error {
		notServed()
		if !strings.Contains(logs.String(), "starts again in this process") || !strings.Contains(logs.String(), "waits for free space") {
			return errors.New("not yet")
		}
		return nil
	})
	checkDiskWaitView(t, api, dir, 4<<20)
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the job done by the node made again", func() error {
		notServed()
		jctx, jcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer jcancel()
		got, err := c.Job(jctx, j.ID)
		if err != nil {
			return err
		}
		if got.State != compute.StateDone {
			return fmt.Errorf("job %s", got.State)
		}
		return nil
	})
}

// TestServeWaitsWhenTheStartFindsTheDiskFull: a start that fails on a full disk after New's wait
// for free bytes (here a file system out of inodes with bytes free; a snapshot's results too large
// for the space left do the same) is tried again in this process once space is back. Serve
// returned New's error: `hydra node` exited 1, and a supervisor restarted it into the same disk
// every few seconds, a node started by hand stayed down.
func TestServeWaitsWhenTheStartFindsTheDiskFull(t *testing.T) {
	dir := testdisk.SmallInodes(t, "64m", 256)
	testdisk.FillInodes(t, dir)
	cfg := testConfig(dir, "n0")
	cfg.minFreeBytes = 4 << 20
	var logs syncbuf.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	served, returned := make(chan error, 1), make(chan struct{})
	go func() { served <- Serve(ctx, cfg); close(returned) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-returned:
		case <-time.After(30 * time.Second):
			t.Errorf("Serve did not return after its context ended:\n%s", logs.String())
		}
	})
	notServed := func() { // Serve returns only when ctx ends, or on an error that is no full disk
		select {
		case err := <-served:
			t.Fatalf("Serve returned: %v\n%s", err, logs.String())
		default:
		}
	}
	waitFor(t, 30*time.Second, "the start to fail on the full disk and wait", func() error {
		notServed()
		if !strings.Contains(logs.String(), "could not start on it") {
			return errors.New("not yet")
		}
		return nil
	})
	if err := os.RemoveAll(filepath.Join(dir, "inode-filler")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the node started once the inodes are back", func() error {
		notServed()
		if !strings.Contains(logs.String(), "node started") {
			return errors.New("not yet")
		}
		return nil
	})
}
