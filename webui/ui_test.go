package webui

import (
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

func TestUIServedFromTheNodeOnly(t *testing.T) {
	srv := newEvServer(t, newEvBackend(), nil)
	get := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, html := get("/?token=abc")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	// Every file the page and its modules refer to is served; none is elsewhere.
	ref := regexp.MustCompile(`(?:src|href)="([^"#]+)"|from '(\./[^']+)'`)
	external := regexp.MustCompile(`(?:src|href)="(?:https?:)?//|url\((?:https?:)?//|import\s*\(?\s*['"]https?:|fetch\(['"]https?:`)
	seen := map[string]bool{}
	var walk func(path, body string)
	walk = func(path, body string) {
		if external.MatchString(body) {
			t.Errorf("%s refers to another origin: %s", path, external.FindString(body))
		}
		for _, m := range ref.FindAllStringSubmatch(body, -1) {
			u := m[1]
			if m[2] != "" {
				u = "/assets/" + strings.TrimPrefix(m[2], "./")
			}
			if strings.HasPrefix(u, "data:") || strings.HasPrefix(u, "/api/") || u == "/metrics" || seen[u] {
				continue
			}
			seen[u] = true
			resp, body := get(u)
			if resp.StatusCode != 200 {
				t.Errorf("%s (from %s): %d", u, path, resp.StatusCode)
				continue
			}
			if strings.HasSuffix(u, ".js") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
				t.Errorf("%s: content type %q", u, resp.Header.Get("Content-Type"))
			}
			walk(u, body)
		}
	}
	walk("/", html)
	for _, want := range []string{"/assets/app.js", "/assets/job.js", "/assets/timeline.js", "/assets/vendor/uPlot.iife.min.js"} {
		if !seen[want] {
			t.Errorf("%s is not reachable from the page", want)
		}
	}
	// Validators: a second load costs a 304.
	resp, _ = get("/assets/app.js")
	if resp2, _ := get("/assets/app.js", "If-None-Match", resp.Header.Get("ETag")); resp2.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", resp2.StatusCode)
	}
	if resp, _ := get("/assets/nope.js"); resp.StatusCode != 404 {
		t.Errorf("unknown asset: %d", resp.StatusCode)
	}
	if resp, _ := get("/assets/../server.go"); resp.StatusCode == 200 {
		t.Errorf("path escape served")
	}
	// The page weight stays within its goal (300 KB uncompressed).
	total := len(html)
	for u := range seen {
		_, b := get(u)
		total += len(b)
	}
	if total > 300<<10 {
		t.Errorf("page weight %d bytes, goal ≤ 300 KB", total)
	}
	t.Logf("page weight %d bytes in %d files", total, len(seen)+1)
}

// TestUIFinishedStates: the page's list of the states a job ends in (FINISHED in job.js) is
// compute's (JobState.Finished), and it is the page's only one: app.js hid the Cancel button and
// job.js chose the summary's audit note each from a list of its own.
func TestUIFinishedStates(t *testing.T) {
	src, err := staticFS.ReadFile("static/job.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`export const FINISHED = new Set\(\[([^\]]*)\]\)`).FindSubmatch(src)
	if m == nil {
		t.Fatal("job.js does not export FINISHED = new Set([...])")
	}
	page := map[compute.JobState]bool{}
	for _, q := range regexp.MustCompile(`'([a-z]+)'`).FindAllSubmatch(m[1], -1) {
		page[compute.JobState(q[1])] = true
	}
	for _, s := range []compute.JobState{compute.StateQueued, compute.StateRunning, compute.StateDone, compute.StateCancelled, compute.StateFailed} {
		if page[s] != s.Finished() {
			t.Errorf("state %s: finished on the page %v, in compute %v", s, page[s], s.Finished())
		}
	}
	if len(page) != 3 {
		t.Errorf("FINISHED holds %d states, want the 3 finished ones: %s", len(page), m[1])
	}
	// "cancelled" is named once in the page's own scripts: in FINISHED.
	files, err := fs.Glob(staticFS, "static/*.js")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := staticFS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if k := strings.Count(string(b), "'cancelled'"); k > 0 {
			n += k
			t.Logf("%s names 'cancelled' %d time(s)", f, k)
		}
	}
	if n != 1 {
		t.Errorf("the page's scripts name 'cancelled' %d times: one list of finished states (FINISHED) is enough", n)
	}
}

// TestUnknownAssetIsJSON404: a UI file that does not exist is a JSON 404 like every unknown path
// (docs/api.md: "both as JSON, under /api/ and outside it (…, the UI's files) alike"); it was Go's
// plain text.
func TestUnknownAssetIsJSON404(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{token: "tok"})
	for _, path := range []string{"/assets/nope.js", "/assets/", "/assets/vendor/"} {
		resp, data := do(t, "GET", srv.URL+path, "", "")
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			!strings.Contains(errMsg(t, data), path) {
			t.Errorf("GET %s: %d, Content-Type %q, %s; want a JSON 404 naming the path", path, resp.StatusCode, resp.Header.Get("Content-Type"), data)
		}
	}
}
