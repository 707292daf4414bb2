package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/internal/syncbuf"
)

// A node waiting for free space stops when it is told to (SIGTERM: its
// context ends) with an error that says why and wraps context.Canceled,
// which the command line takes for a clean stop (exit 0), not a failure.
func TestDiskSpaceWaitEndsWithTheContext(t *testing.T) {
	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- waitForDiskSpace(ctx, t.TempDir(), 1<<62, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	waitFor(t, 10*time.Second, "the wait logged", func() error {
		if !strings.Contains(logs.String(), "disk full") {
			return errors.New("no disk full in the log")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for free space") {
			t.Fatalf("err = %v, want one that says it waited for space and wraps context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end with its context")
	}
}

// getDiskWait sends method path to a node's HTTP address and returns the status, the
// Content-Type and the body.
func getDiskWait(t *testing.T, method, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// checkDiskWaitView checks that base, the HTTP address of a node waiting for space on dir,
// says so on every route: 503, the status and every other API route as JSON with the state,
// the directory and the disk figures, /healthz as unhealthy, the UI's page as HTML.
func checkDiskWaitView(t *testing.T, base, dir string, needed uint64) {
	t.Helper()
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/v1/status"}, {"GET", "/healthz"}, {"GET", "/api/v1/jobs"}, {"POST", "/api/v1/jobs"},
		{"DELETE", "/api/v1/jobs/x"}, {"GET", "/metrics"}, {"GET", "/assets/app.js"},
	} {
		code, ctype, body := getDiskWait(t, r.method, base+r.path)
		var v struct {
			diskWaitView
			Status string `json:"status"`
		}
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(ctype, "application/json") {
			t.Fatalf("%s %s: %d %s, want 503 JSON", r.method, r.path, code, ctype)
		}
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("%s %s: %v: %s", r.method, r.path, err, body)
		}
		if v.State != "waiting for disk space" || v.DataDir != dir || v.NeededBytes != needed || v.FreeBytes >= needed ||
			!strings.Contains(v.Error, "waiting for disk space") || !strings.Contains(v.Error, dir) {
			t.Fatalf("%s %s answered %s, want the state, %s and the disk figures (%d needed)", r.method, r.path, body, dir, needed)
		}
		if r.path == "/healthz" && v.Status != "unhealthy" {
			t.Fatalf("/healthz: %s, want status unhealthy", body)
		}
	}
	code, ctype, body := getDiskWait(t, "GET", base+"/")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(ctype, "text/html") ||
		!strings.Contains(body, "Waiting for disk space") || !strings.Contains(body, dir) {
		t.Fatalf("GET /: %d %s %q, want 503 and an HTML page that says the node waits for space on %s", code, ctype, body, dir)
	}
}

// While a node waits for free space its HTTP address answers why (503, the waiting view),
// not "connection refused"; once it stops waiting, the same listener, never closed, serves
// the next server: a request to the same address reaches it.
func TestDiskSpaceWaitAnswersOnTheHTTPAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- waitForDiskSpace(ctx, dir, 1<<62, ln, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	base := localURL(ln.Addr())
	waitFor(t, 10*time.Second, "the wait logged", func() error {
		if !strings.Contains(logs.String(), "disk full") {
			return errors.New("no disk full in the log")
		}
		return nil
	})
	if !strings.Contains(logs.String(), "api="+base) {
		t.Fatalf("the log does not say where the waiting view answers (%s): %s", base, logs.String())
	}
	checkDiskWaitView(t, base, dir, 1<<62)
	if u, _, err := ReadLocal(dir); err != nil || u != base {
		t.Fatalf("api-url while waiting: %q %v, want %s (for hydra status --data)", u, err, base)
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end with its context")
	}
	// The listener is handed back open: the next server serves the same address.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "the node")
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if code, _, body := getDiskWait(t, "GET", base+"/api/v1/status"); code != http.StatusOK || body != "the node" {
		t.Fatalf("after the wait, %s answered %d %q, want the next server's 200", base, code, body)
	}
}
