package cli

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hydra-compute/hydra/webui"
)

// A submit answered 202 (committed, not yet applied on the node asked) is followed by 404s
// until that node catches up: --wait keeps polling then, and only a 404 after the job was
// seen means it was removed.
func TestSubmitWaitRidesOutNotYetApplied(t *testing.T) {
	var mu sync.Mutex
	hidden, removed := 3, false
	_, api := newAPIThrough(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/api/v1/jobs/job1" {
				mu.Lock()
				notFound := hidden > 0 || removed
				if hidden > 0 {
					hidden--
				}
				mu.Unlock()
				if notFound {
					noJob(w)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	code, out, errs := run(append([]string{"submit", "pi", "--samples", "200000", "--seed", "7", "--wait"}, api...)...)
	if code != ExitOK || !strings.Contains(out, "π ≈") {
		t.Fatalf("exit %d: %q %q", code, out, errs)
	}
	if hidden != 0 {
		t.Fatalf("the job was asked for %d times fewer than the test hid it", hidden)
	}
	// Seen once, then gone: removed while waiting.
	_, api = newAPIThrough(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/api/v1/jobs/job1" {
				mu.Lock()
				gone := removed
				removed = true
				mu.Unlock()
				if gone {
					noJob(w)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	code, _, errs = run(append([]string{"submit", "pi", "--samples", "200000", "--seed", "7", "--wait"}, api...)...)
	if code == ExitOK || !strings.Contains(errs, "is gone") {
		t.Fatalf("a job removed while waited for: exit %d: %q", code, errs)
	}
}

// noJob answers as a node that does not have job1.
func noJob(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, `{"error":"no job job1"}`)
}

// A cancel while some done units wait for their audit says how many were checked: the
// partial result keeps only those, and 'hydra result' counts them, not the done ones.
func TestCancelLineSaysWhatTheResultKeeps(t *testing.T) {
	v := webui.JobView{DoneUnits: 1_059_217_053, ClearedUnits: 420_900_076, TotalUnits: 2_000_000_000, Unit: "samples", Progress: 0.5296}
	got := cancelLine("j1", v)
	for _, want := range []string{"cancelled job j1 at 53.0%", "1,059,217,053 of 2,000,000,000 samples done", "420,900,076 of them checked", "keeps the checked ones"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	v.ClearedUnits = v.DoneUnits
	if got := cancelLine("j1", v); strings.Contains(got, "checked") || !strings.Contains(got, "keeps them") {
		t.Errorf("every done unit checked: %q", got)
	}
}
