//go:build unix

package cli

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOutputIntoSpecialFiles: -o onto a path that is no regular file writes into it (a FIFO
// here, /dev/null in life) instead of replacing it with a regular file, which as root would
// have replaced /dev/null itself; -o onto a symbolic link replaces its target, not the link.
func TestOutputIntoSpecialFiles(t *testing.T) {
	_, api := newAPI(t)
	if code, _, errs := run(append([]string{"submit", "mandelbrot", "--width", "48", "--height", "32", "--max-iter", "50", "--wait"}, api...)...); code != ExitOK {
		t.Fatalf("submit: exit %d: %s", code, errs)
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal("mkfifo:", err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- b
	}()
	if code, _, errs := run(append([]string{"result", "job1", "-o", fifo}, api...)...); code != ExitOK {
		t.Fatalf("result -o FIFO: exit %d (%s)", code, errs)
	}
	select {
	case b := <-got:
		if !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Fatalf("read %d bytes from the FIFO, want a PNG", len(b))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing came through the FIFO")
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the FIFO is now %v (%v): replaced by a file", fi.Mode(), err)
	}
	target, link := filepath.Join(dir, "target.png"), filepath.Join(dir, "link.png")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("target.png", link); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(append([]string{"result", "job1", "-o", link}, api...)...); code != ExitOK {
		t.Fatalf("result -o LINK: exit %d (%s)", code, errs)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link is now %v (%v), want it kept", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("the link's target holds %q…, want the PNG", b[:min(8, len(b))])
	}
}

// TestCtrlCEndsADownload: Ctrl-C (SIGINT) during the download that ends 'hydra submit --wait
// -o FILE', or during 'hydra result -o FILE', ends the command at once, with no partial file and
// no temporary one left. Before, --wait's handler stayed registered through the download, which
// ran on a context of its own: SIGINT and SIGTERM were swallowed until the node's stall timeout
// (a minute), or for all of a slow download; and 'hydra result' died of the signal and left its
// temporary file (.hydra-…) beside FILE.
func TestCtrlCEndsADownload(t *testing.T) {
	_, api := newAPIThrough(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/result.png") {
				w.Header().Set("Content-Type", "image/png")
				w.WriteHeader(http.StatusOK)
				w.Write([]byte("\x89PNG\r\n\x1a\n"))
				http.NewResponseController(w).Flush()
				<-r.Context().Done() // a node that renders slowly
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"submit", "mandelbrot", "--width", "48", "--height", "32", "--max-iter", "50", "--wait", "-o"},
		{"result", "job1", "-o"},
	} {
		dir := t.TempDir()
		cmd := exec.Command(exe, append(append(args, filepath.Join(dir, "m.png")), api...)...)
		cmd.Env = append(os.Environ(), envActAsHydra+"=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := startWith(cmd, os.Interrupt); err != nil {
			t.Fatal(err)
		}
		// Wait until the download has begun: its temporary file is there.
		for deadline := time.Now().Add(20 * time.Second); ; {
			if ents, _ := os.ReadDir(dir); len(ents) > 0 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%s: no download began: %s", args[0], stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("hydra %s: still running 10 s after SIGINT: %s", args[0], stderr.String())
		}
		if code := cmd.ProcessState.ExitCode(); code != ExitFailure || !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("hydra %s after SIGINT: exit %d, stderr %q: want %d saying interrupted", args[0], code, stderr.String(), ExitFailure)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("hydra %s after SIGINT left %s in the output's directory", args[0], ents[0].Name())
		}
	}
}

// TestNodeStopsGracefullyOnHangup: SIGHUP (the terminal or SSH session a node ran in closed)
// stops it as SIGTERM does, with its hand-over and "node stopped"; before, it killed the node
// on the spot (exit 129). Under nohup, which ignores SIGHUP, the node goes on.
func TestNodeStopsGracefullyOnHangup(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := func(t *testing.T, wrap ...string) (*exec.Cmd, *bytes.Buffer, chan error) {
		data := t.TempDir()
		args := append(wrap, exe, "node", "--data", data, "--http", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0",
			"--mdns=false", "--dht=false", "--compute=false")
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), envActAsHydra+"=1")
		cmd.Dir = data // nohup's nohup.out, if any, goes there
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := startWith(cmd, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(data, "api-url")); err == nil {
				return cmd, &stderr, done
			}
			if time.Now().After(deadline) {
				t.Fatalf("the node did not start: %s", stderr.String())
			}
		}
	}
	t.Run("hangup", func(t *testing.T) {
		cmd, stderr, done := start(t)
		cmd.Process.Signal(syscall.SIGHUP)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the node still runs 30 s after SIGHUP")
		}
		if code := cmd.ProcessState.ExitCode(); code != ExitOK || !strings.Contains(stderr.String(), "node stopped") {
			t.Fatalf("after SIGHUP: exit %d, want %d and a graceful stop:\n%s", code, ExitOK, stderr.String())
		}
		done <- nil // for the cleanup
	})
	t.Run("nohup", func(t *testing.T) {
		nohup, err := exec.LookPath("nohup")
		if err != nil {
			t.Fatal("no nohup (coreutils):", err)
		}
		cmd, stderr, done := start(t, nohup)
		cmd.Process.Signal(syscall.SIGHUP)
		select {
		case <-done:
			t.Fatalf("a node under nohup stopped on SIGHUP:\n%s", stderr.String())
		case <-time.After(2 * time.Second):
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the node still runs 30 s after SIGTERM")
		}
		done <- nil
	})
}

// startWith starts cmd with sigs at their default disposition, whatever this test process was
// started with: a run under nohup, or a shell's background job, ignores SIGHUP or SIGINT and
// would hand that on to cmd, which then rightly keeps ignoring it (stopSignals). Handled here
// while cmd starts, they are reset to the default by exec.
func startWith(cmd *exec.Cmd, sigs ...os.Signal) error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	defer signal.Stop(ch)
	return cmd.Start()
}
