package child

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/hydra-compute/hydra/compute"
)

// TestLongErrorTextArrives: a task that fails with an error text longer than the protocol's
// bound, cut by the child inside a multi-byte character, still fails with that text, and the
// child lives on. The cut used to leave a stray byte, which JSON turned into three (U+FFFD):
// the parent refused the message as a broken stream and killed the child, so the error was
// lost (and a module's fault with a long non-ASCII message counted as the node's, its job
// retried on every node for ever).
func TestLongErrorTextArrives(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	// The child cannot read the module: its store's path is too long. The error names it, so
	// the text is over maxErrText, and one ASCII byte before the é's puts the cut mid-character.
	dir := "/nonexistent-hydra-store/x" + strings.Repeat("é", 2200)
	want := fmt.Sprintf("module %s: open %s: %v", sha, filepath.Join(dir, sha), syscall.ENAMETOOLONG)
	if len(want) <= maxErrText || utf8.ValidString(want[:maxErrText-3]) {
		t.Fatalf("the test's error text (%d bytes) is not cut inside a character", len(want))
	}
	r := startWasmRunner(t, "child", dir)
	h0, _ := r.Hello()
	_, err := r.Run(context.Background(), wasmTask(1, sha, 10, compute.ReduceSum, "", compute.Range{Start: 0, End: 10}), nil)
	if err == nil || !strings.Contains(err.Error(), "module "+sha+": open /nonexistent-hydra-store/xé") || !strings.HasSuffix(err.Error(), "...") {
		t.Fatalf("a task that failed with a long error text: %.300v", err)
	}
	if h1, ok := r.Hello(); !ok || h1.PID != h0.PID {
		t.Fatalf("the child was replaced (pid %d → %d, running %v): its error broke the stream", h0.PID, h1.PID, ok)
	}
	// Invalid UTF-8 in a text under the bound grew past it the same way, each bad byte
	// becoming three.
	r = startWasmRunner(t, "child", "/nonexistent-hydra-store/"+strings.Repeat("\xff", 2000))
	h0, _ = r.Hello()
	_, err = r.Run(context.Background(), wasmTask(2, sha, 10, compute.ReduceSum, "", compute.Range{Start: 0, End: 10}), nil)
	if err == nil || !strings.Contains(err.Error(), "module "+sha+": open /nonexistent-hydra-store/\uFFFD") {
		t.Fatalf("a task that failed with an error text of invalid UTF-8: %.300v", err)
	}
	if h1, ok := r.Hello(); !ok || h1.PID != h0.PID {
		t.Fatalf("the child was replaced (pid %d → %d, running %v): its error broke the stream", h0.PID, h1.PID, ok)
	}
}
