package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A request with the wrong method on an endpoint that exists is told 405,
// with an Allow header and a JSON error naming the methods to use, not "no
// such API endpoint" (404), which sends its sender looking for a typo in
// the path; a path that does not exist stays 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{token: "tok"})
	for _, c := range []struct{ method, path, allow string }{
		{http.MethodDelete, "/api/v1/status", "GET"},
		{http.MethodGet, "/api/v1/leave", "POST"},
		{http.MethodPut, "/api/v1/nodes/x/trust/reset", "POST"},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != c.allow || err != nil ||
			!strings.Contains(body["error"], "method not allowed") || !strings.Contains(body["error"], c.allow) {
			t.Errorf("%s %s: %d, Allow %q, body %v (%v); want 405, Allow %q and a JSON error naming it",
				c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), body, err, c.allow)
		}
	}
	resp, err := http.Get(srv.URL + "/api/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /api/v1/nope: %d, want 404", resp.StatusCode)
	}
}
