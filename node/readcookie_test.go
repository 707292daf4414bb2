package node

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestReadCookieIsNoCredential: under read-auth, the ?token= link's read cookie carries a value
// derived from the credential, never the credential. Browsers send a host's cookies to every port
// of it (another web service on the machine, its logs), and the cookie held the link's token,
// usually the admin one: a bearer token for writes. The derived value opens reads, as the cookie
// always did, and is refused as a bearer token; a credential set as the cookie by hand (or by an
// older build) still opens reads.
func TestReadCookieIsNoCredential(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.ReadAuth = true })
	n.start(t)
	tok := activeAdminToken(t, n)
	hc := &http.Client{Timeout: 30 * time.Second}
	get := func(path string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, n.HTTPURL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get("/api/v1/status?token=" + tok)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "hydra_read" {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusOK || cookie == nil {
		t.Fatalf("status?token=: %d, read cookie %v", resp.StatusCode, cookie)
	}
	if cookie.Value == tok || strings.Contains(cookie.Value, tok) {
		t.Fatalf("the read cookie carries the admin credential itself: %q", cookie.Value)
	}
	if got := get("/api/v1/status", "Cookie", "hydra_read="+cookie.Value).StatusCode; got != http.StatusOK {
		t.Fatalf("a read with the read cookie: %d, want 200", got)
	}
	if got := get("/api/v1/status", "Cookie", "hydra_read="+tok).StatusCode; got != http.StatusOK {
		t.Fatalf("a read with the credential as the cookie: %d, want 200", got)
	}
	if got := get("/api/v1/status", "Authorization", "Bearer "+cookie.Value).StatusCode; got != http.StatusUnauthorized {
		t.Fatalf("a read with the cookie's value as a bearer token: %d, want 401", got)
	}
	req, err := http.NewRequest(http.MethodPost, n.HTTPURL()+"/api/v1/tokens", strings.NewReader(`{"role":"admin"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cookie.Value)
	w, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	w.Body.Close()
	if w.StatusCode != http.StatusUnauthorized && w.StatusCode != http.StatusForbidden {
		t.Fatalf("a write with the cookie's value as a bearer token: %d, want 401 or 403", w.StatusCode)
	}
}
