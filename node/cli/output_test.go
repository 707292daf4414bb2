package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// TestConcatOutputCutShortLeavesEarlierFile: hydra result -o FILE of a wasm concat job whose
// download breaks off exits 1 and leaves FILE as it was, as the Mandelbrot image does
// (TestResultDownloadCutShortLeavesNoPartialFile); before, FILE was truncated when the
// download began and left holding the bytes that came.
func TestConcatOutputCutShortLeavesEarlierFile(t *testing.T) {
	f := wasmCluster{fakeCluster: &fakeCluster{}, output: strings.Repeat("0123456789\n", 1000)}
	var cut atomic.Bool
	h := webui.New(webui.Config{Backend: f, Jobs: f})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cut.Load() && strings.HasSuffix(r.URL.Path, "/result.bin") {
			w = &cutWriter{ResponseWriter: w, left: 100}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	api := []string{"--api", srv.URL, "--token", token}
	if _, err := f.SubmitJob(context.Background(), compute.JobSpec{Kind: compute.KindWasm,
		Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 1000, Reduce: compute.ReduceConcat}}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // queued → running → done
		f.Job("job1")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "out.bin")
	if err := os.WriteFile(file, []byte("earlier"), 0o644); err != nil {
		t.Fatal(err)
	}
	cut.Store(true)
	if code, _, errs := run(append([]string{"result", "job1", "-o", file}, api...)...); code != ExitFailure {
		t.Fatalf("result -o over a broken download: exit %d (%s), want %d", code, errs, ExitFailure)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "earlier" {
		t.Fatalf("after a broken download %s holds %d bytes (%v), want the earlier file", file, len(b), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d entries after a broken download, want only out.bin", len(ents))
	}
	cut.Store(false)
	if code, _, errs := run(append([]string{"result", "job1", "-o", file}, api...)...); code != ExitOK {
		t.Fatalf("result -o: exit %d (%s)", code, errs)
	}
	if b, _ := os.ReadFile(file); string(b) != f.output {
		t.Fatalf("%s holds %d bytes, want the %d of the output", file, len(b), len(f.output))
	}
}

// TestSubmitWaitImageToStdoutAlone: submit --wait -o - writes the image to stdout and what it
// says about the job to stderr: before, the text followed the PNG on stdout, and a
// 'hydra submit … -o - > x.png' made a broken image; with --json too it is refused.
func TestSubmitWaitImageToStdoutAlone(t *testing.T) {
	_, api := newAPI(t)
	code, out, errs := run(append([]string{"submit", "mandelbrot", "--width", "48", "--height", "32", "--max-iter", "50", "--wait", "-o", "-"}, api...)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.HasPrefix(out, "\x89PNG") || !strings.HasSuffix(out, "IEND\xaeB`\x82") {
		t.Fatalf("stdout holds more or less than the PNG: %d bytes ending %q", len(out), out[max(0, len(out)-40):])
	}
	if !strings.Contains(errs, "wrote the image to stdout") {
		t.Fatalf("stderr %q does not say where the image went", errs)
	}
	if code, _, errs := run(append([]string{"submit", "mandelbrot", "--wait", "-o", "-", "--json"}, api...)...); code != ExitConfig {
		t.Fatalf("-o - --json: exit %d (%s), want %d", code, errs, ExitConfig)
	}
	if code, _, errs := run(append([]string{"submit", "wasm", "--module", strings.Repeat("ab", 32), "--items", "10", "--reduce", "sum", "--wait", "-o", "x"}, api...)...); code != ExitConfig {
		t.Fatalf("wasm -o with reduce sum: exit %d (%s), want %d: -o would be ignored", code, errs, ExitConfig)
	}
}

// TestSubmitOutlastsTheNodesWriteDeadline: a node waits up to 30 s for a submit to be applied,
// then answers 202 (committed: do not submit again). The client waits longer than that, so that
// it sees the 202 instead of giving up at the same moment and leaving its user to submit twice.
func TestSubmitOutlastsTheNodesWriteDeadline(t *testing.T) {
	if writeRequestTimeout <= 30*time.Second+5*time.Second {
		t.Fatalf("writeRequestTimeout %s: want well over the node's 30 s write deadline", writeRequestTimeout)
	}
}

// TestNamesPrintedClean: a node name with escape sequences (from a machine waiting for
// approval, which nobody vouched for) is printed without them; hydra node refuses such a name.
func TestNamesPrintedClean(t *testing.T) {
	if got := clean("ev\x1b]0;x\a\x1b[2Jil\r\u202e"); strings.ContainsAny(got, "\x1b\a\r\u202e") {
		t.Fatalf("clean left control characters: %q", got)
	}
	if got := oneLine("no leader\x1b[31m (HTTP 503)"); strings.Contains(got, "\x1b") {
		t.Fatalf("oneLine left an escape: %q", got)
	}
	code, _, errs := run("node", "--data", t.TempDir(), "--name", "a\x1b[2Jb", "--http", "127.0.0.1:0",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--mdns=false", "--dht=false")
	if code != ExitConfig || !strings.Contains(errs, "--name") {
		t.Fatalf("--name with an escape: exit %d %q, want a usage error", code, errs)
	}
}

// TestAPIOtherSchemeIsUsageError: --api ftp://… was taken as a host named "ftp"; a malformed
// --api quotes itself without its token.
func TestAPIOtherSchemeIsUsageError(t *testing.T) {
	code, _, errs := run("status", "--api", "ftp://host:7070")
	if code != ExitConfig || !strings.Contains(errs, "http://") {
		t.Fatalf("--api ftp://: exit %d %q", code, errs)
	}
	code, _, errs = run("status", "--api", "http://[::1/?token=SECRET")
	if code != ExitConfig || strings.Contains(errs, "SECRET") {
		t.Fatalf("malformed --api: exit %d %q: want 78 and no token", code, errs)
	}
	if _, _, err := apiBase("localhost:7070/?next=http://x"); err != nil {
		t.Fatalf("a :// after the host is no scheme: %v", err)
	}
}

// TestTokenSpaceTrimmed: a credential in $HYDRA_TOKEN or --token with a trailing newline (an
// editor's, or a file read with $(<f) on some shells) works, as DATA/api-token and
// $HYDRA_JOIN_TOKEN do; before, every request failed with "invalid header field value".
func TestTokenSpaceTrimmed(t *testing.T) {
	_, api := newAPI(t)
	t.Setenv("HYDRA_TOKEN", token+"\n")
	if code, _, errs := run("submit", "pi", "--samples", "1e6", "--api", api[1]); code != ExitOK {
		t.Fatalf("$HYDRA_TOKEN with a newline: exit %d %q", code, errs)
	}
	if code, _, errs := run("submit", "pi", "--samples", "1e6", "--api", api[1], "--token", " "+token+"\r\n"); code != ExitOK {
		t.Fatalf("--token with spaces: exit %d %q", code, errs)
	}
}

// TestWaitRidesOutAShortOutage: --wait gives up on a node only after its polls failed for
// pollErrorsFor, however fast it polls: on a terminal (four polls a second) ten failures in a
// row, 2.5 s of a node restarting, ended the wait.
func TestWaitRidesOutAShortOutage(t *testing.T) {
	old := pollErrorsFor
	pollErrorsFor = 500 * time.Millisecond
	t.Cleanup(func() { pollErrorsFor = old })
	var failing atomic.Int32
	failing.Store(50) // at a poll a millisecond: 50 failures, far fewer than pollErrorsFor
	_, api := newAPIThrough(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && path.Dir(r.URL.Path) == "/api/v1/jobs" && failing.Add(-1) >= 0 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	if code, out, errs := run(append([]string{"submit", "pi", "--samples", "200000", "--seed", "7", "--wait"}, api...)...); code != ExitOK || !strings.Contains(out, "π ≈") {
		t.Fatalf("--wait over 50 failed polls: exit %d %q %q", code, out, errs)
	}
	// Failing for longer than pollErrorsFor ends it.
	failing.Store(1 << 30)
	start := time.Now()
	code, _, errs := run(append([]string{"submit", "pi", "--samples", "200000", "--seed", "7", "--wait"}, api...)...)
	if code != ExitFailure || !strings.Contains(errs, "gave up waiting") || time.Since(start) < pollErrorsFor {
		t.Fatalf("--wait on a node that stays down: exit %d after %s: %q", code, time.Since(start), errs)
	}
}

// TestConcatResultShowsValueAndCommand: hydra result ID of a concat job, without -o, prints the
// sum of the values hydra_map returned (docs/wasm.md: concat reports it too; README: result shows a
// wasm job's value) and the command that writes the output. Before, it printed only the API path
// of the bytes ("output ready: /api/v1/jobs/…/result.bin"), no value and nothing to run.
func TestConcatResultShowsValueAndCommand(t *testing.T) {
	f := wasmCluster{fakeCluster: &fakeCluster{}, output: "0\n1\n4\n"}
	srv := httptest.NewServer(webui.New(webui.Config{Backend: f, Jobs: f}))
	t.Cleanup(srv.Close)
	if _, err := f.SubmitJob(context.Background(), compute.JobSpec{Kind: compute.KindWasm,
		Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 1000, Reduce: compute.ReduceConcat}}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // queued → running → done
		f.Job("job1")
	}
	code, out, errs := run("result", "job1", "--api", srv.URL, "--token", token)
	if code != ExitOK || !strings.Contains(out, "= 78498 over 1,000 of 1,000 items") || !strings.Contains(out, "'hydra result job1 -o FILE'") {
		t.Fatalf("result of a concat job: exit %d, stdout %q (stderr %q), want its value and 'hydra result job1 -o FILE'", code, out, errs)
	}
}
