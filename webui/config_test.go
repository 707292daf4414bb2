package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// configFake serves the settings; assignments are checked the way the node does (a key it
// knows, a value in bounds) in miniature.
type configFake struct {
	*fakeBackend
	mu  sync.Mutex
	cfg ClusterConfig
}

func (f *configFake) ClusterConfig() ClusterConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

func (f *configFake) SetClusterConfig(_ context.Context, as []string) (ClusterConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cfg
	for _, a := range as {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "max-jobs":
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
				return c, fmt.Errorf("%w: max-jobs %q", ErrInvalidConfig, v)
			}
			c.MaxJobs = n
		case "retention":
			d, err := time.ParseDuration(v)
			if err != nil {
				return c, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
			}
			c = NewClusterConfig(d, c.DiskCap, c.MaxJobs)
		default:
			return c, fmt.Errorf("%w: unknown setting %q", ErrInvalidConfig, k)
		}
	}
	f.cfg = c
	return c, nil
}

func TestConfigAPI(t *testing.T) {
	fb := &configFake{fakeBackend: &fakeBackend{token: testToken}, cfg: NewClusterConfig(168*time.Hour, 4<<30, 20000)}
	srv := httptest.NewServer(New(Config{Backend: fb}))
	defer srv.Close()
	resp, data := do(t, "GET", srv.URL+"/api/v1/config", "", "")
	var got ClusterConfig
	if resp.StatusCode != 200 || json.Unmarshal(data, &got) != nil || got != fb.cfg || got.RetentionSeconds != 168*3600 {
		t.Fatalf("get: %d %s", resp.StatusCode, data)
	}
	body := `{"set": ["retention=72h", "max-jobs=30000"]}`
	if resp, _ := do(t, "PUT", srv.URL+"/api/v1/config", "", body); resp.StatusCode != 401 {
		t.Fatalf("set without the token: %d", resp.StatusCode)
	}
	resp, data = do(t, "PUT", srv.URL+"/api/v1/config", testToken, body)
	if resp.StatusCode != 200 || json.Unmarshal(data, &got) != nil || got.Retention != "72h0m0s" || got.MaxJobs != 30000 {
		t.Fatalf("set: %d %s", resp.StatusCode, data)
	}
	for _, bad := range []string{`{"set": ["max-jobs=0"]}`, `{"set": ["colour=blue"]}`, `{"set": []}`, `{"sett": []}`, `[]`,
		`{"set": ["` + strings.Repeat("x", 200) + `"]}`} {
		if resp, data := do(t, "PUT", srv.URL+"/api/v1/config", testToken, bad); resp.StatusCode != 400 || errMsg(t, data) == "" {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, data)
		}
	}
	if fb.ClusterConfig().MaxJobs != 30000 {
		t.Fatal("a refused change changed the settings")
	}
	// Without the optional interface: 503.
	plain := httptest.NewServer(New(Config{Backend: &fakeBackend{token: testToken}}))
	defer plain.Close()
	if resp, _ := do(t, "GET", plain.URL+"/api/v1/config", "", ""); resp.StatusCode != 503 {
		t.Fatalf("no config backend: %d", resp.StatusCode)
	}
}

// TestSubmitOverMaxJobs429: a submit refused for the cluster's job cap answers 429 with the
// reason, the backend's error as it is (no prefix: the route names the operation), and
// docs/api.md's example of that answer is what a node sends (it had kept a "submit: " prefix the
// answers no longer carry).
func TestSubmitOverMaxJobs429(t *testing.T) {
	srv, fj := newJobServer(t)
	reason := "submit job: the cluster holds 20000 jobs (max-jobs 20000): delete finished ones (hydra rm) or raise the cap (hydra config set max-jobs=N)"
	fj.mu.Lock()
	fj.submitErr = fmt.Errorf("%s: %w", reason, compute.ErrTooManyJobs)
	fj.mu.Unlock()
	resp, data := do(t, "POST", srv.URL+"/api/v1/jobs", testToken, `{"kind":"pi","samples":1000,"seed":1}`)
	msg := errMsg(t, data)
	if resp.StatusCode != 429 || msg != reason+": "+compute.ErrTooManyJobs.Error() {
		t.Fatalf("%d %s", resp.StatusCode, data)
	}
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(doc)), " ")
	if want := "e.g. `{\"error\": \"" + msg + "\"}`"; !strings.Contains(flat, want) {
		t.Errorf("docs/api.md's example of a submit over max-jobs should read %s", want)
	}
}
