package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The demo without --keep stops its nodes and leaves nothing behind: no data
// directory of its own in $TMPDIR (its nodes' state, tens of MiB a run), and
// no second web address for a cluster that is gone once it returns.
func TestDemoLeavesNothingBehind(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv(envActAsHydra, "1")
	png := filepath.Join(t.TempDir(), "demo.png")
	code, out, errs := run("demo", "--nodes", "3", "--samples", "1e7", "--width", "32", "-o", png)
	if code != ExitOK {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if !strings.Contains(out, "π ≈ 3.") || !strings.Contains(out, "Mandelbrot written to "+png) {
		t.Errorf("demo output lacks the results:\n%s", out)
	}
	if n := strings.Count(out, "Web UI: "); n != 1 {
		t.Errorf("demo printed the web address %d times, want once (while the cluster runs):\n%s", n, out)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if e.Name() == "hydra-localport.lock" { // internal/localport's lock, shared by every process on the machine
			continue
		}
		t.Errorf("demo left %s in $TMPDIR", filepath.Join(tmp, e.Name()))
	}
	if _, err := os.Stat(png); err != nil {
		t.Errorf("the picture: %v", err)
	}
}

// A picture the demo could not write is a usage error at once, not after its whole run (about
// two minutes), which then also left its nodes' data behind as if they had failed.
func TestDemoChecksItsPictureFirst(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	code, out, errs := run("demo", "-o", filepath.Join(t.TempDir(), "no-such-dir", "demo.png"))
	if code != ExitConfig || !strings.Contains(errs, "-o ") || strings.Contains(out, "Starting") {
		t.Fatalf("demo -o into a missing directory: exit %d\nstdout %q\nstderr %q\nwant 78 before any node starts", code, out, errs)
	}
}
