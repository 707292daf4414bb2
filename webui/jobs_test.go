package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// fakeJobs is an in-memory JobBackend.
type fakeJobs struct {
	mu        sync.Mutex
	jobs      []compute.Job
	pi        map[string]compute.PiResult
	img       map[string][]uint32
	acc       map[string][]compute.Range
	submitted []compute.JobSpec
	calls     int    // writes that reached the backend
	rowsRead  uint64 // rows MandelChunk handed out (accepted ones)
	submitErr error  // SubmitJob fails with it when set
}

var t0 = time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)

func newFakeJobs() *fakeJobs {
	return &fakeJobs{pi: map[string]compute.PiResult{}, img: map[string][]uint32{}, acc: map[string][]compute.Range{}}
}

func (f *fakeJobs) SubmitJob(ctx context.Context, spec compute.JobSpec) (compute.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.submitErr != nil {
		return compute.Job{}, f.submitErr
	}
	f.calls++
	f.submitted = append(f.submitted, spec)
	j := compute.Job{
		ID: fmt.Sprintf("j%d", len(f.jobs)+1), Name: spec.Name, Kind: spec.Kind, Spec: spec,
		Priority: spec.EffectivePriority(), State: compute.StateQueued,
		SubmittedAt: t0.Add(time.Duration(len(f.jobs)) * time.Second), TotalUnits: spec.TotalUnits(),
		Nodes: []compute.NodeContribution{},
	}
	f.jobs = append(f.jobs, j)
	return j, nil
}

func (f *fakeJobs) add(j compute.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, j)
}

func (f *fakeJobs) Jobs() []compute.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]compute.Job(nil), f.jobs...)
}

func (f *fakeJobs) Job(id string) (compute.Job, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jobs {
		if j.ID == id {
			return j, true
		}
	}
	return compute.Job{}, false
}

func (f *fakeJobs) CancelJob(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for i, j := range f.jobs {
		if j.ID == id {
			if j.State.Finished() {
				return fmt.Errorf("cancel %s: %w", id, compute.ErrJobFinished)
			}
			if id == "refused" { // the leader refused the caller's credential (revoked meanwhile)
				return fmt.Errorf("cancel %s: %w: needs an admin credential", id, ErrForbidden)
			}
			f.jobs[i].State = compute.StateCancelled
			return nil
		}
	}
	return fmt.Errorf("cancel %s: %w", id, compute.ErrNoSuchJob)
}

func (f *fakeJobs) DeleteJob(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for i, j := range f.jobs {
		if j.ID == id {
			f.jobs = append(f.jobs[:i], f.jobs[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("delete %s: %w", id, compute.ErrNoSuchJob)
}

func (f *fakeJobs) PiResult(id string) (compute.PiResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.pi[id]
	if !ok {
		return r, compute.ErrNoSuchJob
	}
	return r, nil
}

// MandelChunk serves each accepted range as one stored chunk.
func (f *fakeJobs) MandelChunk(id string, row uint64) (compute.Range, []uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, ok := f.img[id]
	if !ok {
		return compute.Range{}, nil, compute.ErrNoSuchJob
	}
	var m *compute.MandelParams
	for _, j := range f.jobs {
		if j.ID == id {
			m = j.Spec.Mandel
		}
	}
	gap := compute.Range{Start: row, End: uint64(m.Height)}
	for _, r := range f.acc[id] {
		if r.Start <= row && row < r.End {
			f.rowsRead += r.Len()
			return r, img[r.Start*uint64(m.Width) : r.End*uint64(m.Width)], nil
		}
		if r.Start > row {
			gap.End = min(gap.End, r.Start)
		}
	}
	return gap, nil, nil
}

func (f *fakeJobs) AcceptedRanges(id string) ([]compute.Range, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acc[id], nil
}

const testToken = "s3cret"

func newJobServer(t *testing.T) (*httptest.Server, *fakeJobs) {
	t.Helper()
	fj := newFakeJobs()
	b := &fakeBackend{token: testToken, status: Status{Nodes: []NodeStatus{{ID: "peerA", Name: "alpha"}, {ID: "peerB", Name: "beta"}}}}
	srv := httptest.NewServer(New(Config{Backend: b, Jobs: fj}))
	t.Cleanup(srv.Close)
	return srv, fj
}

func do(t *testing.T, method, url, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

func errMsg(t *testing.T, data []byte) string {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(data, &e); err != nil || e.Error == "" {
		t.Fatalf("not an error body: %q", data)
	}
	return e.Error
}

func TestSubmitValidationErrors(t *testing.T) {
	srv, fj := newJobServer(t)
	pi := func(extra string) string { return `{"kind":"pi",` + extra + `}` }
	md := func(replace map[string]string) string {
		f := map[string]string{"width": "64", "height": "48", "center_x": "-0.5", "center_y": "0", "span": "3", "max_iter": "100"}
		for k, v := range replace {
			f[k] = v
		}
		var parts []string
		for _, k := range []string{"width", "height", "center_x", "center_y", "span", "max_iter"} {
			if v, ok := f[k]; ok && v != "-" {
				parts = append(parts, fmt.Sprintf("%q:%s", k, v))
			}
		}
		return `{"kind":"mandelbrot",` + strings.Join(parts, ",") + `}`
	}
	cases := []struct{ body, field, why string }{
		{pi(`"samples":0,"seed":1`), "samples", "outside"},
		{pi(`"samples":-5,"seed":1`), "samples", "outside"},
		{pi(`"samples":1000000000000001,"seed":1`), "samples", "outside"},
		{pi(`"samples":1e16,"seed":1`), "samples", "outside"},
		{pi(`"samples":1e400,"seed":1`), "samples", "outside"},
		{pi(`"samples":99999999999999999999999,"seed":1`), "samples", "outside"},
		{pi(`"samples":1.5,"seed":1`), "samples", "not an integer"},
		{pi(`"samples":1e-3,"seed":1`), "samples", "not an integer"},
		{pi(`"samples":"100","seed":1`), "samples", "not a string"},
		{pi(`"samples":null,"seed":1`), "samples", "null"},
		{pi(`"seed":1`), "samples", "missing"},
		{pi(`"samples":100,"seed":-1`), "seed", "outside"},
		{pi(`"samples":100,"seed":18446744073709551616`), "seed", "outside"},
		{pi(`"samples":100,"seed":"18446744073709551616"`), "seed", "outside"},
		{pi(`"samples":100,"seed":"0018446744073709551616"`), "seed", "outside"},
		{pi(`"samples":100,"seed":"007"`), "seed", `"007" has leading zeros (write 7)`},
		{pi(`"samples":100,"seed":"00"`), "seed", `"00" has leading zeros (write 0)`},
		{pi(`"samples":100,"seed":"0x10"`), "seed", "decimal"},
		{pi(`"samples":100,"seed":""`), "seed", "decimal"},
		{pi(`"samples":100,"seed":1.5`), "seed", "not an integer"},
		{pi(`"samples":100,"seed":true`), "seed", "boolean"},
		{pi(`"samples":100`), "seed", "missing"},
		{pi(`"samples":100,"seed":1,"priority":0`), "priority", "outside"},
		{pi(`"samples":100,"seed":1,"priority":101`), "priority", "outside"},
		{pi(`"samples":100,"seed":1,"name":5`), "name", "string"},
		{pi(`"samples":100,"seed":1,"name":"` + strings.Repeat("x", 201) + `"`), "name", "longer"},
		{pi(`"samples":100,"seed":1,"name":"a\u0007b"`), "name", "printable"},
		{pi(`"samples":100,"seed":1,"width":3`), "width", "unknown field"},
		{pi(`"samples":100,"seed":1,"bogus":3`), "bogus", "unknown field"},
		{pi(`"samples":100,"samples":100,"seed":1`), "samples", "more than once"},
		{pi(`"samples":1e9,"seed":1,"chunk_units":1000`), "chunk_units", "outside"},
		{pi(`"samples":1e15,"seed":1,"chunk_units":65536`), "chunk_units", "at most 100000"},
		{pi(`"samples":1e5,"seed":1,"chunk_units":1e6`), "chunk_units", "more than the job"},
		{pi(`"samples":1e9,"seed":1,"chunk_units":0`), "chunk_units", "outside"},
		{pi(`"samples":1e9,"seed":1,"chunk_units":"65536"`), "chunk_units", "not a string"},
		{`{"samples":100,"seed":1}`, "kind", "missing"},
		{`{"kind":"fft"}`, "kind", "not a job kind"},
		{`{"kind":7}`, "kind", "string"},
		{md(map[string]string{"width": "0"}), "width", "outside"},
		{md(map[string]string{"width": "16385"}), "width", "outside"},
		{md(map[string]string{"height": "0"}), "height", "outside"},
		{md(map[string]string{"height": "20000"}), "height", "outside"},
		{md(map[string]string{"height": "-"}), "height", "missing"},
		{md(map[string]string{"max_iter": "0"}), "max_iter", "outside"},
		{md(map[string]string{"max_iter": "1000001"}), "max_iter", "outside"},
		{md(map[string]string{"max_iter": "10.5"}), "max_iter", "not an integer"},
		{md(map[string]string{"span": "0"}), "span", "greater than 0"},
		{md(map[string]string{"span": "-1"}), "span", "greater than 0"},
		{md(map[string]string{"span": "1e999"}), "span", "not a finite number"},
		{md(map[string]string{"center_x": "1e999"}), "center_x", "not a finite number"},
		{md(map[string]string{"center_y": "-1e400"}), "center_y", "not a finite number"},
		{md(map[string]string{"center_y": `"0"`}), "center_y", "not a string"},
		{md(map[string]string{"span": "-"}), "span", "missing"},
		{strings.Replace(md(nil), `"width"`, `"samples":5,"width"`, 1), "samples", "unknown field"},
		{`{"kind":`, "invalid JSON", ""},
		{`[1,2]`, "invalid JSON", "object"},
		{``, "empty body", ""},
		{pi(`"samples":100,"seed":1`) + `{}`, "invalid JSON", "trailing"},
	}
	for _, c := range cases {
		resp, data := do(t, "POST", srv.URL+"/api/v1/jobs", testToken, c.body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%.80s: got %d, want 400 (%s)", c.body, resp.StatusCode, data)
			continue
		}
		msg := errMsg(t, data)
		if !strings.Contains(msg, c.field) || !strings.Contains(msg, c.why) {
			t.Errorf("%.80s: message %q should name %q and say %q", c.body, msg, c.field, c.why)
		}
	}
	if fj.calls != 0 {
		t.Fatalf("%d invalid submissions reached the backend", fj.calls)
	}
}

func TestSubmitPiExactSeedAndSamples(t *testing.T) {
	srv, fj := newJobServer(t)
	for i, body := range []string{
		`{"kind":"pi","samples":1e11,"seed":18446744073709551615,"name":"big","priority":5}`,
		`{"kind":"pi","samples":100000000000,"seed":"18446744073709551615","name":"big","priority":5}`,
	} {
		resp, data := do(t, "POST", srv.URL+"/api/v1/jobs", testToken, body)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("got %d: %s", resp.StatusCode, data)
		}
		got := fj.submitted[i]
		want := compute.JobSpec{Kind: compute.KindPi, Name: "big", Priority: 5, Pi: &compute.PiParams{Samples: 100_000_000_000, Seed: math.MaxUint64}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("backend got %+v %+v, want %+v", got, got.Pi, want.Pi)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		if m["seed"] != "18446744073709551615" || m["id"] == nil || m["state"] != "queued" || m["kind"] != "pi" {
			t.Fatalf("answer: %s", data)
		}
		if loc := resp.Header.Get("Location"); loc != "/api/v1/jobs/"+m["id"].(string) {
			t.Fatalf("Location %q", loc)
		}
		// Read back as a string and through the client: exact.
		_, data = do(t, "GET", srv.URL+"/api/v1/jobs/"+m["id"].(string), "", "")
		if !bytes.Contains(data, []byte(`"seed": "18446744073709551615"`)) || !bytes.Contains(data, []byte(`"samples": 100000000000`)) {
			t.Fatalf("job view: %s", data)
		}
		v, err := NewClient(srv.URL, "").Job(context.Background(), m["id"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if v.Spec.Pi == nil || v.Spec.Pi.Seed != math.MaxUint64 || v.Spec.Pi.Samples != 1e11 || v.Spec.Name != "big" || v.Spec.Priority != 5 {
			t.Fatalf("client view %+v", v)
		}
	}
}

func TestSubmitMandelbrotThroughClient(t *testing.T) {
	srv, fj := newJobServer(t)
	spec := compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{
		Width: 3840, Height: 2160, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.0002, MaxIter: 5000}}
	v, err := NewClient(srv.URL, testToken).SubmitJob(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fj.submitted[0], spec) {
		t.Fatalf("backend got %+v", fj.submitted[0].Mandel)
	}
	if !reflect.DeepEqual(v.Spec.Mandel, spec.Mandel) || v.TotalUnits != 2160 || v.Unit != "rows" {
		t.Fatalf("view %+v %+v", v, v.Spec.Mandel)
	}
	// center 0 is sent and shown, not dropped as a zero value.
	spec.Mandel.CenterY = 0
	if _, err := NewClient(srv.URL, testToken).SubmitJob(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
}

func TestJobWritesNeedToken(t *testing.T) {
	srv, fj := newJobServer(t)
	fj.add(compute.Job{ID: "j1", Kind: compute.KindPi, State: compute.StateRunning})
	for _, tok := range []string{"", "wrong"} {
		for _, rq := range [][2]string{{"POST", "/api/v1/jobs"}, {"POST", "/api/v1/jobs/j1/cancel"}, {"DELETE", "/api/v1/jobs/j1"}} {
			resp, data := do(t, rq[0], srv.URL+rq[1], tok, `{"kind":"pi","samples":10,"seed":1}`)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s token %q: %d %s", rq[0], rq[1], tok, resp.StatusCode, data)
			}
		}
	}
	if fj.calls != 0 {
		t.Fatal("a write reached the backend without the token")
	}
	// Reads are open.
	if resp, _ := do(t, "GET", srv.URL+"/api/v1/jobs/j1", "", ""); resp.StatusCode != 200 {
		t.Fatalf("read: %d", resp.StatusCode)
	}
}

func TestUnknownJob404(t *testing.T) {
	srv, _ := newJobServer(t)
	for _, rq := range [][2]string{
		{"GET", "/api/v1/jobs/nope"}, {"GET", "/api/v1/jobs/nope/result"}, {"GET", "/api/v1/jobs/nope/result.raw"},
		{"GET", "/api/v1/jobs/nope/result.png"}, {"POST", "/api/v1/jobs/nope/cancel"}, {"DELETE", "/api/v1/jobs/nope"},
	} {
		resp, data := do(t, rq[0], srv.URL+rq[1], testToken, "")
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(errMsg(t, data), "nope") {
			t.Errorf("%s %s: %d %s", rq[0], rq[1], resp.StatusCode, data)
		}
	}
}

func TestCancelAndDelete(t *testing.T) {
	srv, fj := newJobServer(t)
	fj.add(compute.Job{ID: "run", Kind: compute.KindPi, State: compute.StateRunning, Spec: piSpec(10, 1)})
	fj.add(compute.Job{ID: "fin", Kind: compute.KindPi, State: compute.StateDone, Spec: piSpec(10, 1)})
	c := NewClient(srv.URL, testToken)
	ctx := context.Background()
	v, err := c.CancelJob(ctx, "run")
	if err != nil || v.State != compute.StateCancelled {
		t.Fatalf("cancel: %v %+v", err, v)
	}
	_, err = c.CancelJob(ctx, "fin")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("cancel a finished job: %v, want 409", err)
	}
	fj.add(compute.Job{ID: "refused", Kind: compute.KindPi, State: compute.StateRunning, Spec: piSpec(10, 1)})
	if _, err = c.CancelJob(ctx, "refused"); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("a cancel the cluster refused the caller: %v, want 403", err)
	}
	if err := c.DeleteJob(ctx, "fin"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Job(ctx, "fin"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("deleted job: %v", err)
	}
}

func TestNoJobBackend503(t *testing.T) {
	srv := httptest.NewServer(New(Config{Backend: &fakeBackend{token: testToken}}))
	defer srv.Close()
	for _, rq := range [][2]string{{"GET", "/api/v1/jobs"}, {"POST", "/api/v1/jobs"}, {"GET", "/api/v1/jobs/x/result.png"}} {
		if resp, _ := do(t, rq[0], srv.URL+rq[1], testToken, "{}"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%v: %d", rq, resp.StatusCode)
		}
	}
}

func piSpec(n, seed uint64) compute.JobSpec {
	return compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: n, Seed: seed}}
}

func TestListNewestFirstAndView(t *testing.T) {
	srv, fj := newJobServer(t)
	fj.add(compute.Job{ID: "old", Kind: compute.KindPi, Spec: piSpec(1000, 0), Priority: 1, State: compute.StateDone,
		SubmittedAt: t0, StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(9 * time.Second), DoneUnits: 1000, TotalUnits: 1000,
		Nodes: []compute.NodeContribution{{Node: "peerA", Units: 750, Chunks: 3, ComputeSeconds: 6}, {Node: "peerZ", Units: 250, Chunks: 1, ComputeSeconds: 2}}})
	fj.add(compute.Job{ID: "new", Kind: compute.KindPi, Spec: piSpec(1000, 0), State: compute.StateQueued, SubmittedAt: t0.Add(time.Minute), TotalUnits: 1000})
	resp, data := do(t, "GET", srv.URL+"/api/v1/jobs", "", "")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	var list []map[string]any
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0]["id"] != "new" || list[1]["id"] != "old" {
		t.Fatalf("order: %s", data)
	}
	old := list[1]
	for k, want := range map[string]any{"state": "done", "done_units": 1000.0, "total_units": 1000.0, "progress": 1.0,
		"seed": "0", "samples": 1000.0, "kind": "pi", "compute_seconds": 8.0, "started_at": "2026-11-28T14:00:01Z"} {
		if old[k] != want {
			t.Errorf("%s = %v, want %v", k, old[k], want)
		}
	}
	nodes := old["nodes"].([]any)
	a := nodes[0].(map[string]any)
	if a["node"] != "peerA" || a["name"] != "alpha" || a["units"] != 750.0 || a["chunks"] != 3.0 || a["compute_seconds"] != 6.0 || a["share"] != 0.75 {
		t.Errorf("contribution %v", a)
	}
	if _, ok := list[0]["started_at"]; ok {
		t.Errorf("a queued job shows started_at: %v", list[0])
	}
}

func TestParseUintExact(t *testing.T) {
	ok := map[string]uint64{
		"0": 0, "7": 7, "1e11": 1e11, "1E+11": 1e11, "2.5e3": 2500, "100000000000": 1e11, "-0": 0, "0e999999999999": 0,
		"18446744073709551615": math.MaxUint64, "1.8446744073709551615e19": math.MaxUint64, "1000e-3": 1, "0.0001e4": 1,
	}
	for s, want := range ok {
		if got, err := ParseUintExact(s); err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", s, got, err, want)
		}
	}
	bad := map[string]error{
		"1.5": errNotInteger, "1e-3": errNotInteger, "1e-9999999999": errNotInteger, "-1": errNegative,
		"18446744073709551616": errTooLarge, "1e20": errTooLarge, "1e9999999999": errTooLarge,
		"": errSyntax, "01": errSyntax, "1.": errSyntax, ".5": errSyntax, "1e": errSyntax, "0x10": errSyntax, "+1": errSyntax, "1 ": errSyntax,
	}
	for s, want := range bad {
		if _, err := ParseUintExact(s); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", s, err, want)
		}
	}
}

func FuzzDecodeJobRequest(f *testing.F) {
	for _, s := range []string{
		`{"kind":"pi","samples":1e11,"seed":7}`,
		`{"kind":"pi","samples":100,"seed":"18446744073709551615","name":"x","priority":3}`,
		`{"kind":"mandelbrot","width":64,"height":48,"center_x":-0.5,"center_y":0,"span":3,"max_iter":100}`,
		`{"kind":"mandelbrot","width":1,"height":1,"center_x":1e300,"center_y":-1e-300,"span":5e-324,"max_iter":1000000}`,
		`{"kind":"pi","samples":1.0e3,"seed":0,"seed":1}`, `[]`, `{"kind":"pi"}{}`, `{"kind":null}`,
		`{"kind":"wasm","module":"` + strings.Repeat("ab", 32) + `","items":1000,"reduce":"sum","params":"x"}`,
		`{"kind":"wasm","module":"` + strings.Repeat("0f", 32) + `","items":1e6,"reduce":"concat","params":{"a":[1,2]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		spec, err := DecodeJobRequest(body)
		if err != nil {
			if spec.Pi != nil || spec.Mandel != nil || spec.Wasm != nil || spec.Kind != "" {
				t.Fatalf("error %v with a non-zero spec", err)
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("accepted an invalid spec: %v", err)
		}
		again, err := EncodeJobRequest(spec)
		if err != nil {
			t.Fatal(err)
		}
		spec2, err := DecodeJobRequest(again)
		if err != nil || !reflect.DeepEqual(spec, spec2) {
			t.Fatalf("round trip: %s → %v %+v", again, err, spec2)
		}
		// The job view carries the same parameters.
		vb, err := json.Marshal(JobView{Spec: spec, ID: "j"})
		if err != nil {
			t.Fatal(err)
		}
		var v JobView
		if err := json.Unmarshal(vb, &v); err != nil || !reflect.DeepEqual(v.Spec, spec) {
			t.Fatalf("view round trip: %s → %v %+v", vb, err, v.Spec)
		}
	})
}

// TestListJobsPaged: GET /api/v1/jobs?limit=N pages through the jobs newest first, each page's
// Link header naming the next, until a page without one; state filters (repeated or comma
// separated) and bad parameters are answered as documented.
func TestListJobsPaged(t *testing.T) {
	srv, fj := newJobServer(t)
	states := []compute.JobState{compute.StateDone, compute.StateRunning, compute.StateQueued, compute.StateFailed, compute.StateCancelled}
	var want, wantRunning []string
	for i := range 25 {
		id := fmt.Sprintf("j%02d", i)
		st := states[i%len(states)]
		fj.add(compute.Job{ID: id, Kind: compute.KindPi, Spec: piSpec(1000, 0), State: st, SubmittedAt: t0.Add(time.Duration(i) * time.Second), TotalUnits: 1000})
		want = append([]string{id}, want...)
		if st == compute.StateRunning || st == compute.StateQueued {
			wantRunning = append([]string{id}, wantRunning...)
		}
	}
	walk := func(first string) (ids []string, pages int) {
		t.Helper()
		for path := first; path != ""; pages++ {
			resp, data := do(t, "GET", srv.URL+path, "", "")
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, data)
			}
			var page []JobView
			if err := json.Unmarshal(data, &page); err != nil {
				t.Fatal(err)
			}
			for _, v := range page {
				ids = append(ids, v.ID)
			}
			path = ""
			if link := resp.Header.Get("Link"); link != "" {
				start, end := strings.Index(link, "<"), strings.Index(link, ">")
				if start < 0 || end < start || !strings.HasSuffix(link, `; rel="next"`) {
					t.Fatalf("Link %q", link)
				}
				path = link[start+1 : end]
			}
			if pages > 30 {
				t.Fatal("pages never end")
			}
		}
		return ids, pages
	}
	if ids, pages := walk("/api/v1/jobs?limit=10"); !slices.Equal(ids, want) || pages != 3 {
		t.Fatalf("pages of 10: %d pages, %v; want 3, %v", pages, ids, want)
	}
	if ids, pages := walk("/api/v1/jobs?limit=5"); !slices.Equal(ids, want) || pages != 5 {
		t.Fatalf("pages of 5 (the last one full): %d pages, %v", pages, ids)
	}
	if ids, pages := walk("/api/v1/jobs"); !slices.Equal(ids, want) || pages != 1 {
		t.Fatalf("no limit: %d pages, %v", pages, ids)
	}
	for _, q := range []string{"state=running,queued&limit=3", "state=running&state=queued&limit=4"} {
		if ids, _ := walk("/api/v1/jobs?" + q); !slices.Equal(ids, wantRunning) {
			t.Fatalf("%s: %v, want %v", q, ids, wantRunning)
		}
	}
	if ids, _ := walk("/api/v1/jobs?before=j10"); !slices.Equal(ids, want[15:]) {
		t.Fatalf("before j10: %v", ids)
	}
	// ?token= is the read credential every read takes under read-auth (the
	// UI link's form), not a parameter of the list: a client that sends it
	// must not be answered 400.
	if ids, _ := walk("/api/v1/jobs?token=viewer-tok&state=running,queued"); !slices.Equal(ids, wantRunning) {
		t.Fatalf("with ?token=: %v, want %v", ids, wantRunning)
	}
	for q, code := range map[string]int{"limit=0": 400, "limit=10001": 400, "limit=x": 400, "state=busy": 400, "sort=id": 400,
		"before=nope": 404, "before=" + strings.Repeat("a", 65): 400} {
		if resp, data := do(t, "GET", srv.URL+"/api/v1/jobs?"+q, "", ""); resp.StatusCode != code || !strings.Contains(string(data), "error") {
			t.Errorf("%s: %d %s, want %d", q, resp.StatusCode, data, code)
		}
	}
}
