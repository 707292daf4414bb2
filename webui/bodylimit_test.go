package webui

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// moduleFake stores nothing: it is the module cap and a record of what reached it.
type moduleFake struct {
	max   int64
	calls int
}

func (f *moduleFake) PutModule(_ context.Context, code []byte) (ModuleInfo, error) {
	f.calls++
	return ModuleInfo{SHA256: strings.Repeat("0", 64), Size: int64(len(code))}, nil
}
func (f *moduleFake) Modules() []ModuleInfo                      { return nil }
func (f *moduleFake) DeleteModule(context.Context, string) error { return ErrNoSuchModule }
func (f *moduleFake) MaxModuleBytes() int64                      { return f.max }

// TestBodyOverItsLimitIs413: every route that reads a body answers one over its limit 413
// Content Too Large, with a JSON error naming the limit, and calls no backend. JSON bodies over
// 1 MiB answered 400 ("request body too large", with the limit on the submit route only) while a
// module over its cap answered 413: a client could not tell "send less" from "send something else".
// The one exception is a job submit, whose every refusal is 400 (TestSubmitBodyOverItsLimitIs400).
func TestBodyOverItsLimitIs413(t *testing.T) {
	cfg := &configFake{fakeBackend: &fakeBackend{token: testToken}, cfg: NewClusterConfig(168*time.Hour, 4<<30, 20000)}
	adm := &admissionFake{fakeBackend: &fakeBackend{token: testToken}}
	mods := &moduleFake{max: 4096}
	servers := map[string]*httptest.Server{}
	for name, c := range map[string]Config{
		"config":    {Backend: cfg},
		"admission": {Backend: adm},
		"modules":   {Backend: &fakeBackend{token: testToken}, Modules: mods},
	} {
		servers[name] = httptest.NewServer(New(c))
		defer servers[name].Close()
	}
	big := strings.Repeat("x", 2<<20)
	for _, tc := range []struct {
		srv                *httptest.Server
		method, path, body string
		ctype, limit       string
	}{
		{servers["config"], "PUT", "/api/v1/config", `{"set":["` + big + `"]}`, "application/json", "1048576 bytes (1 MiB)"},
		{servers["admission"], "POST", "/api/v1/approve", `{"fingerprint":"` + big + `"}`, "application/json", "1048576 bytes (1 MiB)"},
		{servers["admission"], "POST", "/api/v1/tokens", `{"role":"worker","ttl":"` + big + `"}`, "application/json", "1048576 bytes (1 MiB)"},
		{servers["modules"], "POST", "/api/v1/modules", strings.Repeat("\x00", 5000), "application/wasm", "4096 bytes (4 KiB)"},
	} {
		req, err := http.NewRequest(tc.method, tc.srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: read answer: %v", tc.method, tc.path, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s over its limit: %d %q %.200s, want 413 with a JSON error", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), data)
			continue
		}
		if msg := errMsg(t, []byte(data)); !strings.Contains(msg, "larger than "+tc.limit) {
			t.Errorf("%s %s over its limit: %q should say it is larger than %s", tc.method, tc.path, msg, tc.limit)
		}
	}
	if len(adm.calls) != 0 || mods.calls != 0 {
		t.Fatalf("a body over its limit reached a backend: admission %q, modules %d", adm.calls, mods.calls)
	}
	// A body under the limit that is not JSON is still the request's content: 400.
	if resp, data := do(t, "PUT", servers["config"].URL+"/api/v1/config", testToken, `{"set":`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("invalid JSON: %d %s, want 400", resp.StatusCode, data)
	}
	// The client the CLI uses reports it as every other refusal: the server's line and the status.
	err := NewClient(servers["config"].URL, testToken).Do(context.Background(), "PUT", "/api/v1/config", map[string][]string{"set": {big}}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge || !strings.HasSuffix(err.Error(), "the most this node takes (HTTP 413)") {
		t.Fatalf("client: %v, want the API's 413 error", err)
	}
}

// TestSubmitBodyOverItsLimitIs400: POST /api/v1/jobs answers every invalid submit 400 with a
// message that says what and why, an oversized body among them (the jobs API's contract from its
// start: samples, width, kind, a non-finite number, an oversized body), so a body over 1 MiB is
// 400 there, not the 413 of the other routes, with the same message naming the limit, and no job
// reaches the backend.
func TestSubmitBodyOverItsLimitIs400(t *testing.T) {
	jobs, fj := newJobServer(t)
	big := strings.Repeat("x", 2<<20)
	resp, data := do(t, "POST", jobs.URL+"/api/v1/jobs", testToken, `{"kind":"pi","samples":100,"seed":1,"name":"`+big+`"}`)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("submit over 1 MiB: %d %q %.200s, want 400 with a JSON error", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	if msg := errMsg(t, data); msg != "request body larger than 1048576 bytes (1 MiB), the most this node takes" {
		t.Errorf("submit over 1 MiB: %q, want the limit named", msg)
	}
	if fj.calls != 0 {
		t.Errorf("a submit over its limit reached the backend (%d calls)", fj.calls)
	}
	// The client the CLI uses shows the server's line and the status.
	err := NewClient(jobs.URL, testToken).Do(context.Background(), "POST", "/api/v1/jobs", map[string]string{"kind": "pi", "name": big}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.HasSuffix(err.Error(), "the most this node takes (HTTP 400)") {
		t.Fatalf("client: %v, want the API's 400 error", err)
	}
}
