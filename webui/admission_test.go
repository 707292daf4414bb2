package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// admissionFake records the membership calls it gets and answers them in miniature.
type admissionFake struct {
	*fakeBackend
	mu    sync.Mutex
	calls []string
}

func (f *admissionFake) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *admissionFake) Approve(_ context.Context, key, role, auth string) (PendingResult, error) {
	f.record("approve %s %s %s", key, role, auth)
	switch key {
	case "unknown":
		return PendingResult{}, fmt.Errorf("%w: no such pending node", ErrNotFound)
	case "no-node-admin": // a refusal whose text says "no node": still 403
		return PendingResult{}, fmt.Errorf("approve: %w: no node credential is an admin's", ErrForbidden)
	case "member": // a member already, approved as a worker
		return PendingResult{}, fmt.Errorf("%s is a member already: %w", key, ErrConflict)
	}
	return PendingResult{ID: "id-" + key, Fingerprint: key, Role: role}, nil
}

func (f *admissionFake) Deny(_ context.Context, key, auth string) (PendingResult, error) {
	f.record("deny %s %s", key, auth)
	return PendingResult{ID: "id-" + key, Fingerprint: key}, nil
}

func (f *admissionFake) Remove(_ context.Context, node, auth string) (PendingResult, error) {
	f.record("remove %s %s", node, auth)
	switch node {
	case "self":
		return PendingResult{}, fmt.Errorf("%w: a node cannot remove itself here", ErrForbidden)
	case "forbidden-city": // an unknown node whose name says "forbidden": still 404
		return PendingResult{}, fmt.Errorf("no node named %q: %w", node, ErrNotFound)
	case "bad":
		return PendingResult{}, errors.New("the server's own failure: 500 (only sentinel errors choose a 4xx or 503)")
	case "ambiguous":
		return PendingResult{}, fmt.Errorf("2 nodes are named %q: give a peer ID: %w", node, ErrInvalid)
	case "slow": // the request's deadline passed: a retry may succeed, as for every other route
		return PendingResult{}, fmt.Errorf("evict: %w", context.DeadlineExceeded)
	}
	if node == "noleader" { // what node.Remove returns while the cluster has no leader
		return PendingResult{}, fmt.Errorf("%w: %w", ErrUnavailable, errors.New("not the leader"))
	}
	return PendingResult{ID: node}, nil
}

func (f *admissionFake) CreateToken(_ context.Context, req TokenRequest, auth string) (TokenCreated, error) {
	f.record("token %s %s %s", req.Role, req.TTL, auth)
	return TokenCreated{Token: "secret", ID: "t1", Role: req.Role, Kind: "join"}, nil
}

func (f *admissionFake) Tokens() []TokenInfo {
	return []TokenInfo{{ID: "t1", Kind: "join", Role: "member"}}
}

func (f *admissionFake) RevokeToken(_ context.Context, id, auth string) error {
	f.record("revoke %s %s", id, auth)
	if id == "forbidden" {
		return fmt.Errorf("no such token or credential %q: %w", id, ErrNotFound)
	}
	return nil
}

func (f *admissionFake) SetAdmit(_ context.Context, mode, auth string) error {
	f.record("admit %s %s", mode, auth)
	if mode != "lan" && mode != "approve" {
		return fmt.Errorf("admit mode must be lan or approve: %w", ErrInvalid)
	}
	return nil
}

// Every membership endpoint decodes its own body, passes the caller's credential, answers the
// backend's result with its status code, and maps errors (bad body 400, unknown 404, forbidden
// 403: by the backend's sentinel errors, whatever their text says, so that a node named
// "forbidden-city" is not found rather than forbidden); without the token nothing reaches the
// backend.
func TestAdmissionAPI(t *testing.T) {
	fb := &admissionFake{fakeBackend: &fakeBackend{token: testToken}}
	srv := httptest.NewServer(New(Config{Backend: fb}))
	defer srv.Close()
	for _, tc := range []struct {
		method, path, body string
		code               int
		call               string // what the backend saw, "" for nothing
		answer             string // a field of the answer: key=value
	}{
		{"POST", "/api/v1/approve", `{"fingerprint":"fp1","role":"worker"}`, 200, "approve fp1 worker " + testToken, "role=worker"},
		{"POST", "/api/v1/approve", `{"fingerprint":"unknown"}`, 404, "approve unknown  " + testToken, ""},
		{"POST", "/api/v1/approve", `{"fingerprint":"no-node-admin"}`, 403, "approve no-node-admin  " + testToken, ""},
		{"POST", "/api/v1/approve", `{"fingerprint":"fp1","colour":"red"}`, 400, "", ""},
		{"POST", "/api/v1/deny", `{"fingerprint":"fp2"}`, 200, "deny fp2 " + testToken, "fingerprint=fp2"},
		{"POST", "/api/v1/deny", `{"fingerprint":"fp2","role":"worker"}`, 400, "", ""},
		{"POST", "/api/v1/remove", `{"node":"n3"}`, 200, "remove n3 " + testToken, "id=n3"},
		{"POST", "/api/v1/remove", `{"node":"self"}`, 403, "remove self " + testToken, ""},
		{"POST", "/api/v1/remove", `{"node":"noleader"}`, 503, "remove noleader " + testToken, ""},
		{"POST", "/api/v1/remove", `{"node":"forbidden-city"}`, 404, "remove forbidden-city " + testToken, ""},
		{"POST", "/api/v1/remove", `{"node":"bad"}`, 500, "remove bad " + testToken, ""},
		{"POST", "/api/v1/remove", `{"node":"ambiguous"}`, 400, "remove ambiguous " + testToken, ""},
		{"POST", "/api/v1/remove", `{"node":"slow"}`, 503, "remove slow " + testToken, ""},
		{"POST", "/api/v1/approve", `{"fingerprint":"member","role":"worker"}`, 409, "approve member worker " + testToken, ""},
		{"POST", "/api/v1/tokens", `{"role":"member","ttl":"1h"}`, 201, "token member 1h " + testToken, "token=secret"},
		{"POST", "/api/v1/admit", `{"mode":"lan"}`, 200, "admit lan " + testToken, "admit=lan"},
		{"POST", "/api/v1/admit", `{"mode":"open"}`, 400, "admit open " + testToken, ""},
		{"POST", "/api/v1/admit", `{"mode":`, 400, "", ""},
		{"DELETE", "/api/v1/tokens/t1", "", 200, "revoke t1 " + testToken, "status=revoked"},
		{"DELETE", "/api/v1/tokens/forbidden", "", 404, "revoke forbidden " + testToken, ""},
		{"GET", "/api/v1/tokens", "", 200, "", ""},
	} {
		fb.mu.Lock()
		fb.calls = nil
		fb.mu.Unlock()
		if tc.method == "POST" {
			if resp, _ := do(t, tc.method, srv.URL+tc.path, "", tc.body); resp.StatusCode != 401 {
				t.Errorf("%s %s without the token: %d", tc.method, tc.path, resp.StatusCode)
			}
		}
		resp, data := do(t, tc.method, srv.URL+tc.path, testToken, tc.body)
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, resp.StatusCode, data, tc.code)
			continue
		}
		fb.mu.Lock()
		calls := fb.calls
		fb.mu.Unlock()
		if want := []string{tc.call}; tc.call == "" && len(calls) != 0 || tc.call != "" && (len(calls) != 1 || calls[0] != want[0]) {
			t.Errorf("%s %s %s: backend saw %q, want %q", tc.method, tc.path, tc.body, calls, tc.call)
		}
		if tc.code >= 400 && errMsg(t, data) == "" {
			t.Errorf("%s %s %s: an error without a message: %s", tc.method, tc.path, tc.body, data)
		}
		if k, v, ok := strings.Cut(tc.answer, "="); ok {
			var got map[string]any
			if err := json.Unmarshal(data, &got); err != nil || fmt.Sprint(got[k]) != v {
				t.Errorf("%s %s: answer %s, want %s=%s", tc.method, tc.path, data, k, v)
			}
		}
	}
	// A backend that does not manage membership says so.
	plain := httptest.NewServer(New(Config{Backend: &fakeBackend{token: testToken}}))
	defer plain.Close()
	if resp, data := do(t, "POST", plain.URL+"/api/v1/approve", testToken, `{"fingerprint":"x"}`); resp.StatusCode != 501 {
		t.Fatalf("approve on a backend without admission: %d %s", resp.StatusCode, data)
	}
}

// TestAdmissionRequiredFields: a membership request without its required field (`{}`, `null`,
// a blank value) is the caller's mistake, 400 naming the field, and never reaches the backend:
// POST /api/v1/approve with `{}` answered 404 'no node with fingerprint ""'.
func TestAdmissionRequiredFields(t *testing.T) {
	fb := &admissionFake{fakeBackend: &fakeBackend{token: testToken}}
	srv := httptest.NewServer(New(Config{Backend: fb}))
	defer srv.Close()
	long := `"` + strings.Repeat("x", 200) + `"`
	for _, tc := range []struct{ path, field string }{
		{"/api/v1/approve", "fingerprint"}, {"/api/v1/deny", "fingerprint"}, {"/api/v1/remove", "node"},
		{"/api/v1/tokens", "role"}, {"/api/v1/admit", "mode"},
	} {
		for _, body := range []string{`{}`, `null`, `{"` + tc.field + `": "  "}`, `{"` + tc.field + `": ` + long + `}`} {
			resp, data := do(t, "POST", srv.URL+tc.path, testToken, body)
			if msg := errMsg(t, data); resp.StatusCode != 400 || !strings.Contains(msg, tc.field) {
				t.Errorf("POST %s %s: %d %s, want 400 naming %s", tc.path, body, resp.StatusCode, data, tc.field)
			}
		}
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if len(fb.calls) != 0 {
		t.Errorf("the backend saw %q", fb.calls)
	}
}
