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
func TestBodyOverItsLimitIs413(t *testing.T) {
	jobs, fj := newJobServer(t)
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
		{jobs, "POST", "/api/v1/jobs", `{"kind":"pi","samples":100,"seed":1,"name":"` + big + `"}`, "application/json", "1048576 bytes (1 MiB)"},
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
	if fj.calls != 0 || len(adm.calls) != 0 || mods.calls != 0 {
		t.Fatalf("a body over its limit reached a backend: jobs %d, admission %q, modules %d", fj.calls, adm.calls, mods.calls)
	}
	// A body under the limit that is not JSON is still the request's content: 400.
	if resp, data := do(t, "PUT", servers["config"].URL+"/api/v1/config", testToken, `{"set":`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("invalid JSON: %d %s, want 400", resp.StatusCode, data)
	}
	// The client the CLI uses reports it as every other refusal: the server's line and the status.
	err := NewClient(jobs.URL, testToken).Do(context.Background(), "POST", "/api/v1/jobs", map[string]string{"kind": "pi", "name": big}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge || !strings.HasSuffix(err.Error(), "the most this node takes (HTTP 413)") {
		t.Fatalf("client: %v, want the API's 413 error", err)
	}
}
