package webui

import (
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// readFake is a backend with admin and viewer credentials and the
// read-auth setting.
type readFake struct {
	*configFake
}

func (f readFake) Authorize(tok string) string {
	switch tok {
	case "admin-tok":
		return RoleAdmin
	case "viewer-tok":
		return RoleViewerCred
	}
	return ""
}

func TestReadAuth(t *testing.T) {
	cfg := NewClusterConfig(time.Hour, 0, 10)
	fb := readFake{&configFake{fakeBackend: &fakeBackend{token: "admin-tok", healthy: errors.New("no leader: secret detail")}, cfg: cfg}}
	srv := httptest.NewServer(New(Config{Backend: fb}))
	defer srv.Close()
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
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	// Off (the default): reads are open.
	if resp, _ := get("/api/v1/status"); resp.StatusCode != http.StatusOK {
		t.Fatalf("read-auth off: status %d", resp.StatusCode)
	}
	fb.mu.Lock()
	fb.cfg.ReadAuth = true
	fb.mu.Unlock()
	for _, p := range []string{"/api/v1/status", "/api/v1/config", "/metrics", "/", "/assets/app.js", "/api/v1/events"} {
		if resp, _ := get(p); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("read-auth on, no credential: GET %s answered %d", p, resp.StatusCode)
		}
		if resp, _ := get(p, "Authorization", "Bearer wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("read-auth on, wrong credential: GET %s answered %d", p, resp.StatusCode)
		}
	}
	if resp, _ := get("/api/v1/status", "Authorization", "Bearer viewer-tok"); resp.StatusCode != http.StatusOK {
		t.Fatalf("viewer credential: %d", resp.StatusCode)
	}
	if resp, _ := get("/api/v1/status", "Authorization", "Bearer admin-tok"); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin credential: %d", resp.StatusCode)
	}
	// The UI link: ?token= sets a cookie that the page's assets then carry.
	resp, _ := get("/?token=viewer-tok")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("UI link: %d", resp.StatusCode)
	}
	cookie := readCookieOf(resp)
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("UI link set no HttpOnly, SameSite=Strict cookie: %+v", resp.Cookies())
	}
	if resp, _ := get("/assets/app.js", "Cookie", readCookie+"="+cookie.Value); resp.StatusCode != http.StatusOK {
		t.Fatalf("asset with the cookie: %d", resp.StatusCode)
	}
	// Any read with ?token= sets it: a page whose token reads but whose event stream is refused
	// (the tab got its token while read-auth was off) asks /healthz?token= for it (app.js), unhealthy
	// node or not.
	hresp, _ := get("/healthz?token=viewer-tok")
	if c := readCookieOf(hresp); c == nil || c.Value != "viewer-tok" || !c.HttpOnly {
		t.Fatalf("/healthz?token= set no read cookie: %+v", c)
	}
	// The cookie never authorizes a write.
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/api/v1/config", strings.NewReader(`{"set":["max-jobs=5"]}`))
	req.Header.Set("Cookie", readCookie+"=admin-tok")
	wresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	wresp.Body.Close()
	if wresp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a write with only the read cookie: %d", wresp.StatusCode)
	}
	// Health checks keep working, without the reason.
	resp, body := get("/healthz")
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "secret") {
		t.Fatalf("healthz without a credential: %d %s", resp.StatusCode, body)
	}
	if _, body := get("/healthz", "Authorization", "Bearer viewer-tok"); !strings.Contains(body, "secret detail") {
		t.Fatalf("healthz with a credential lacks the reason: %s", body)
	}
}

// TestReadAuthEndsOpenStreams: an event stream opened while reads were open ends once read-auth
// is turned on (it kept sending every status and job change to anyone, for as long as it stayed
// open); one with a viewer credential goes on.
func TestReadAuthEndsOpenStreams(t *testing.T) {
	cfg := NewClusterConfig(time.Hour, 0, 10)
	fb := readFake{&configFake{fakeBackend: &fakeBackend{token: "admin-tok"}, cfg: cfg}}
	srv := httptest.NewServer(New(Config{Backend: fb}))
	defer srv.Close()
	open := func(tok string) (ended chan struct{}, stop func()) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/events", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("open stream: %v %v", resp, err)
		}
		ended = make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, resp.Body); close(ended) }()
		return ended, func() { resp.Body.Close() }
	}
	anon, stopAnon := open("")
	defer stopAnon()
	viewer, stopViewer := open("viewer-tok")
	defer stopViewer()
	fb.mu.Lock()
	fb.cfg.ReadAuth = true
	fb.mu.Unlock()
	select {
	case <-anon:
	case <-time.After(15 * time.Second):
		t.Fatal("an anonymous stream still open 15 s after read-auth was turned on")
	}
	select {
	case <-viewer:
		t.Fatal("a viewer's stream ended")
	default:
	}
}

// TestForgetReadCookie: DELETE /api/v1/read-cookie expires the HttpOnly cookie that a ?token=
// link set (the page cannot clear it itself: "Forget token" left it until the browser session
// ended), so the browser's next read is refused again.
func TestForgetReadCookie(t *testing.T) {
	cfg := NewClusterConfig(time.Hour, 0, 10)
	cfg.ReadAuth = true
	fb := readFake{&configFake{fakeBackend: &fakeBackend{token: "admin-tok"}, cfg: cfg}}
	srv := httptest.NewServer(New(Config{Backend: fb}))
	defer srv.Close()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar}
	do := func(method, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := do(http.MethodGet, "/?token=viewer-tok"); resp.StatusCode != http.StatusOK {
		t.Fatalf("UI link: %d", resp.StatusCode)
	}
	if resp := do(http.MethodGet, "/api/v1/status"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a read with the link's cookie: %d", resp.StatusCode)
	}
	resp := do(http.MethodDelete, "/api/v1/read-cookie")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /api/v1/read-cookie: %d", resp.StatusCode)
	}
	c := readCookieOf(resp)
	if c == nil || c.MaxAge >= 0 || c.Value != "" || c.Path != "/" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("DELETE /api/v1/read-cookie set no expired read cookie for path /: %+v", resp.Cookies())
	}
	if resp := do(http.MethodGet, "/api/v1/status"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a read after the cookie was cleared: %d, want 401", resp.StatusCode)
	}
	// It needs no credential, with read-auth on or off.
	fb.mu.Lock()
	fb.cfg.ReadAuth = false
	fb.mu.Unlock()
	if resp := do(http.MethodDelete, "/api/v1/read-cookie"); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /api/v1/read-cookie with read-auth off: %d", resp.StatusCode)
	}
}

// readCookieOf is the read cookie an answer sets (nil: none).
func readCookieOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == readCookie {
			return c
		}
	}
	return nil
}
