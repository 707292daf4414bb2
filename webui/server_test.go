package webui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakeBackend struct {
	status  Status
	token   string
	healthy error
	left    bool
}

func (f *fakeBackend) Status() Status     { return f.status }
func (f *fakeBackend) Token() string      { return f.token }
func (f *fakeBackend) Healthy() error     { return f.healthy }
func (f *fakeBackend) Activity() Activity { return Activity{} }
func (f *fakeBackend) Leave(ctx context.Context) error {
	f.left = true
	return nil
}

func newTestServer(t *testing.T, b *fakeBackend) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Config{Backend: b}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStatusJSONShape(t *testing.T) {
	b := &fakeBackend{status: Status{
		Self:   NodeRef{ID: "p1", Name: "a"},
		Leader: "p1", Term: 3,
		Nodes: []NodeStatus{{ID: "p1", Name: "a", Role: RoleLeader, Online: true, Addrs: []string{"/ip4/1.2.3.4/tcp/1"}, OS: "linux", Arch: "amd64", Cores: 4}},
	}}
	srv := newTestServer(t, b)
	resp, err := http.Get(srv.URL + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status code %d", resp.StatusCode)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"self", "leader", "term", "nodes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status lacks %q", k)
		}
	}
	n := m["nodes"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "name", "role", "online", "addrs", "os", "arch", "cores", "last_seen"} {
		if _, ok := n[k]; !ok {
			t.Errorf("node lacks %q", k)
		}
	}
}

func TestHealthz(t *testing.T) {
	b := &fakeBackend{healthy: errors.New("no leader known")}
	srv := newTestServer(t, b)
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unhealthy: got %d, want 503", resp.StatusCode)
	}
	b.healthy = nil
	resp, err = http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthy: got %d", resp.StatusCode)
	}
}

func TestWritesNeedToken(t *testing.T) {
	b := &fakeBackend{token: "s3cret"}
	srv := newTestServer(t, b)
	ctx := context.Background()
	for _, tok := range []string{"", "wrong"} {
		err := NewClient(srv.URL, tok).Do(ctx, "POST", "/api/v1/leave", struct{}{}, nil)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 401 {
			t.Fatalf("token %q: got %v, want 401", tok, err)
		}
		if !strings.Contains(ae.Msg, "token") {
			t.Errorf("401 message does not say what is missing: %q", ae.Msg)
		}
	}
	if b.left {
		t.Fatal("leave ran without a token")
	}
	if err := NewClient(srv.URL, "s3cret").Do(ctx, "POST", "/api/v1/leave", struct{}{}, nil); err != nil {
		t.Fatal(err)
	}
	if !b.left {
		t.Fatal("leave did not run with the right token")
	}
}

// The authorization scheme is case-insensitive (RFC 9110 §11.1): "bearer" and "BEARER" carry the
// token as "Bearer" does; another scheme or a bare token does not.
func TestBearerSchemeAnyCase(t *testing.T) {
	b := &fakeBackend{token: "s3cret"}
	srv := newTestServer(t, b)
	for auth, want := range map[string]int{"bearer s3cret": 200, "BEARER  s3cret": 200, "Basic s3cret": 401, "s3cret": 401} {
		b.left = false
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/leave", strings.NewReader("{}"))
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || b.left != (want == 200) {
			t.Errorf("Authorization %q: %d (left %v), want %d", auth, resp.StatusCode, b.left, want)
		}
	}
}

func TestNoTokenYetRefusesWrites(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{})
	err := NewClient(srv.URL, "anything").Do(context.Background(), "POST", "/api/v1/leave", struct{}{}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %v, want 503", err)
	}
}

func TestUnknownEndpoint(t *testing.T) {
	b := &fakeBackend{token: "t"}
	srv := newTestServer(t, b)
	err := NewClient(srv.URL, "").Do(context.Background(), "GET", "/api/v1/nope", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("got %v, want 404", err)
	}
}

func TestMetricsServed(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{})
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
}

// send sends req and reads the whole answer.
func send(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}
