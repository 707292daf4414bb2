package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
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
