package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hydra-compute/hydra/webui"
)

// hydra config set takes its settings and flags in any order, as the other
// commands do (hydra approve FP --data DIR): the settings reach the node, and
// none of the flags is taken for a setting.
func TestConfigSetTakesFlagsAfterTheSettings(t *testing.T) {
	var got []webui.ConfigChange
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ch webui.ConfigChange
		if r.Method == http.MethodPut {
			if err := json.NewDecoder(r.Body).Decode(&ch); err != nil {
				t.Errorf("body: %v", err)
			}
			got = append(got, ch)
		}
		webui.WriteJSON(w, http.StatusOK, webui.ClusterConfig{Retention: "72h0m0s", MaxJobs: 20000})
	}))
	t.Cleanup(srv.Close)
	for _, args := range [][]string{
		{"config", "set", "retention=72h", "max-jobs=20000", "--api", srv.URL, "--token", token},
		{"config", "set", "--api", srv.URL, "retention=72h", "--token", token, "max-jobs=20000"},
	} {
		got = nil
		code, _, errs := run(args...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		if len(got) != 1 || strings.Join(got[0].Set, " ") != "retention=72h max-jobs=20000" {
			t.Fatalf("%v: the node got %+v", args, got)
		}
	}
}

// A setting the node refuses (an out-of-range value answers 400) is a refused request: exit 1
// and the node's one line, as for every other command (README, exit codes); it exited 78. A
// setting that is not key=value is caught before asking: a usage error (78), and no request.
func TestConfigSetRefusedExits1(t *testing.T) {
	var puts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		puts.Add(1)
		webui.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid settings: max-jobs 0: want 1 to 100000"})
	}))
	t.Cleanup(srv.Close)
	code, out, errs := run("config", "set", "max-jobs=0", "--api", srv.URL, "--token", token)
	if code != ExitFailure || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "want 1 to 100000") {
		t.Fatalf("config set max-jobs=0 refused with 400: exit %d, stdout %q, stderr %q; want exit %d and the node's one line", code, out, errs, ExitFailure)
	}
	puts.Store(0)
	for _, bad := range []string{"max-jobs", "=5"} {
		code, _, errs = run("config", "set", bad, "--api", srv.URL, "--token", token)
		if code != ExitConfig || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "key=value") {
			t.Errorf("config set %q: exit %d, stderr %q; want exit %d and one line asking for key=value", bad, code, errs, ExitConfig)
		}
	}
	if n := puts.Load(); n != 0 {
		t.Fatalf("%d requests for settings that are not key=value; want none", n)
	}
}
