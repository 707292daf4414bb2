package webui

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// stateJobs serves the job routes from a real compute.JobStore, counting the rows that
// MandelChunk hands out; its first held calls wait until release is closed.
type stateJobs struct {
	*compute.JobStore
	rowsRead atomic.Uint64
	held     atomic.Int32 // MandelChunk calls still to hold
	waiting  chan struct{}
	release  chan struct{}
}

func (s *stateJobs) SubmitJob(context.Context, compute.JobSpec) (compute.Job, error) {
	return compute.Job{}, fmt.Errorf("not in this test")
}
func (s *stateJobs) CancelJob(context.Context, string) error { return fmt.Errorf("not in this test") }
func (s *stateJobs) DeleteJob(_ context.Context, id string) error {
	if err, ok := s.ApplyCommand(compute.Delete{Job: id}, 0).(error); ok {
		return err
	}
	return nil
}
func (s *stateJobs) AcceptedRanges(id string) ([]compute.Range, error) { return s.Accepted(id) }
func (s *stateJobs) MandelChunk(id string, row uint64) (compute.Range, []uint32, error) {
	if s.held.Add(-1) >= 0 {
		s.waiting <- struct{}{}
		<-s.release
	}
	r, counts, err := s.JobStore.MandelChunk(id, row)
	if counts != nil {
		s.rowsRead.Add(r.Len())
	}
	return r, counts, err
}

// newRenderFixture has a running 1024×1100 job "big" (rows 0–600 in chunks of 50, more than
// 4 MiB of counts in all), a finished 64×48 job "small" and a running one "part", served with two render slots
// and a PNG cache.
func newRenderFixture(t *testing.T) (*httptest.Server, *stateJobs, *PNGCache, []uint32) {
	t.Helper()
	st := compute.NewJobStore(compute.NewMemResults())
	t.Cleanup(func() { st.Close() })
	sj := &stateJobs{JobStore: st, waiting: make(chan struct{}, 8), release: make(chan struct{})}
	apply := func(cmd any) {
		t.Helper()
		if err, ok := st.ApplyCommand(cmd, 0).(error); ok {
			t.Fatalf("apply %T: %v", cmd, err)
		}
	}
	add := func(id string, w, h, done, step int) []uint32 {
		p := compute.MandelParams{Width: w, Height: h, CenterX: -0.5, Span: 3, MaxIter: 60}
		apply(compute.Submit{ID: id, Time: t0, Spec: compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &p}})
		img := make([]uint32, w*h)
		if err := compute.MandelRows(p, 0, done, img); err != nil {
			t.Fatal(err)
		}
		var items []compute.ChunkResult
		for a := 0; a < done; a += step {
			b := min(a+step, done)
			items = append(items, compute.ChunkResult{Chunk: compute.Chunk{Job: id, Range: compute.Range{Start: uint64(a), End: uint64(b)}}, Node: "n",
				Payload: compute.EncodeMandelPayload(img[a*w : b*w])})
		}
		apply(compute.Results{Time: t0, Items: items})
		return img
	}
	big := add("big", 1024, 1100, 600, 50)
	add("small", 64, 48, 48, 16)
	add("part", 64, 48, 20, 10)
	cache, err := OpenPNGCache(filepath.Join(t.TempDir(), "png-cache"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Backend: &fakeBackend{token: testToken}, Jobs: sj, PNGCache: cache, RenderSlots: 2}))
	t.Cleanup(srv.Close)
	return srv, sj, cache, big
}

// TestRawReadsOnlyTheRowsAsked: ?rows=A-B reads the stored chunks holding those rows, not the
// image.
func TestRawReadsOnlyTheRowsAsked(t *testing.T) {
	srv, sj, _, big := newRenderFixture(t)
	resp, data := do(t, "GET", srv.URL+"/api/v1/jobs/big/result.raw?rows=120-122", "", "")
	if resp.StatusCode != 200 || len(data) != 2*1024*4 {
		t.Fatalf("rows 120-122: %d, %d bytes", resp.StatusCode, len(data))
	}
	for i := range 2 * 1024 {
		if got := binary.LittleEndian.Uint32(data[4*i:]); got != big[120*1024+i] {
			t.Fatalf("count %d: %d, want %d", i, got, big[120*1024+i])
		}
	}
	if n := sj.rowsRead.Load(); n != 50 {
		t.Fatalf("read %d rows for 2 (want the one 50-row chunk holding them)", n)
	}
	resp, data = do(t, "GET", srv.URL+"/api/v1/jobs/big/result.raw?rows=700-702", "", "")
	if resp.StatusCode != 200 || !bytes.Equal(data, make([]byte, 2*1024*4)) || sj.rowsRead.Load() != 50 {
		t.Fatalf("rows not computed: %d, %d bytes, %d rows read", resp.StatusCode, len(data), sj.rowsRead.Load())
	}
}

// TestRenderCap: beyond the render slots a large render is answered 429 with Retry-After, while
// the UI's small row fetches still answer.
func TestRenderCap(t *testing.T) {
	srv, sj, _, _ := newRenderFixture(t)
	sj.held.Store(2)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, path := range []string{"/api/v1/jobs/part/result.png", "/api/v1/jobs/big/result.raw"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Error(err)
				return
			}
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
			if i == 0 {
				if _, err := png.Decode(&buf); err != nil {
					t.Errorf("png: %v", err)
				}
			}
		}()
	}
	for range 2 { // both renders hold a slot and wait in the store
		select {
		case <-sj.waiting:
		case <-time.After(10 * time.Second):
			t.Fatal("the renders did not start")
		}
	}
	for _, path := range []string{"/api/v1/jobs/big/result.png", "/api/v1/jobs/big/result.raw?rows=0-1100", "/api/v1/jobs/small/result.png"} {
		resp, data := do(t, "GET", srv.URL+path, "", "")
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" || !strings.Contains(errMsg(t, data), "retry") {
			t.Fatalf("%s with every slot taken: %d %q %s", path, resp.StatusCode, resp.Header.Get("Retry-After"), data)
		}
	}
	resp, data := do(t, "GET", srv.URL+"/api/v1/jobs/big/result.raw?rows=100-200", "", "") // 400 KiB: the UI's size
	if resp.StatusCode != 200 || len(data) != 100*1024*4 {
		t.Fatalf("small row fetch with every slot taken: %d, %d bytes", resp.StatusCode, len(data))
	}
	close(sj.release)
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Fatalf("the held renders answered %v", codes)
	}
	resp, _ = do(t, "GET", srv.URL+"/api/v1/jobs/small/result.png", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("after the renders: %d", resp.StatusCode)
	}
}

// TestPNGCache: a finished job's PNG is rendered once into the cache, then served from it (with
// Range), and the sweep removes it with the job.
func TestPNGCache(t *testing.T) {
	srv, sj, cache, _ := newRenderFixture(t)
	resp, first := do(t, "GET", srv.URL+"/api/v1/jobs/small/result.png", "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("first: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, err := png.Decode(bytes.NewReader(first)); err != nil {
		t.Fatal(err)
	}
	read := sj.rowsRead.Load()
	if read == 0 {
		t.Fatal("the first render read no rows")
	}
	small, _ := sj.Job("small")
	path, _ := cache.path(small)
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, first) {
		t.Fatalf("cache file: %v (%d bytes, served %d)", err, len(b), len(first))
	}
	resp, again := do(t, "GET", srv.URL+"/api/v1/jobs/small/result.png", "", "")
	if resp.StatusCode != 200 || !bytes.Equal(again, first) || sj.rowsRead.Load() != read {
		t.Fatalf("cache hit: %d, same bytes %v, rows read %d → %d", resp.StatusCode, bytes.Equal(again, first), read, sj.rowsRead.Load())
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/jobs/small/result.png", nil)
	req.Header.Set("Range", "bytes=0-7")
	rr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var part bytes.Buffer
	_, _ = part.ReadFrom(rr.Body)
	rr.Body.Close()
	if rr.StatusCode != http.StatusPartialContent || !bytes.Equal(part.Bytes(), first[:8]) {
		t.Fatalf("range: %d %q", rr.StatusCode, part.Bytes())
	}
	// A running job is not cached: its image still changes.
	if resp, _ := do(t, "GET", srv.URL+"/api/v1/jobs/part/result.png", "", ""); resp.StatusCode != 200 {
		t.Fatalf("running job: %d", resp.StatusCode)
	}
	if ents, _ := os.ReadDir(cache.Dir()); len(ents) != 1 {
		t.Fatalf("cache files %v, want only the finished job's (a running job's PNG is not cached)", ents)
	}
	if err := sj.DeleteJob(context.Background(), "small"); err != nil {
		t.Fatal(err)
	}
	if err := cache.Sweep(jobGeneration(sj)); err != nil {
		t.Fatal(err)
	}
	if fileExists(path) {
		t.Fatal("the sweep kept a deleted job's PNG")
	}
}

// TestPNGCacheNewFinish: a job that finishes again (its rows computed again after a node was
// quarantined, docs/audits.md) gets its new image, not the cached one of its earlier finish, and
// the sweep removes the old file. Here the job "small" is deleted and finished again under the
// same ID with other rows: what the cache sees of a job that ran again.
func TestPNGCacheNewFinish(t *testing.T) {
	srv, sj, cache, _ := newRenderFixture(t)
	_, first := do(t, "GET", srv.URL+"/api/v1/jobs/small/result.png", "", "")
	old, _ := sj.Job("small")
	oldPath, _ := cache.path(old)
	if !fileExists(oldPath) {
		t.Fatal("the first render was not cached")
	}
	if err := sj.DeleteJob(context.Background(), "small"); err != nil {
		t.Fatal(err)
	}
	p := compute.MandelParams{Width: 64, Height: 48, CenterX: -0.5, Span: 3, MaxIter: 20}
	img := make([]uint32, 64*48)
	if err := compute.MandelRows(p, 0, 48, img); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Minute)
	for _, cmd := range []any{
		compute.Submit{ID: "small", Time: later, Spec: compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &p}},
		compute.Results{Time: later, Items: []compute.ChunkResult{{Chunk: compute.Chunk{Job: "small", Range: compute.Range{Start: 0, End: 48}}, Node: "n",
			Payload: compute.EncodeMandelPayload(img)}}},
	} {
		if err, ok := sj.ApplyCommand(cmd, 0).(error); ok {
			t.Fatalf("apply %T: %v", cmd, err)
		}
	}
	if j, _ := sj.Job("small"); !j.State.Finished() {
		t.Fatalf("the job again: %s", j.State)
	}
	var want bytes.Buffer
	if err := renderPNG(&want, sj, "small", &p); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(want.Bytes(), first) {
		t.Fatal("the two finishes render the same image: the test shows nothing")
	}
	resp, again := do(t, "GET", srv.URL+"/api/v1/jobs/small/result.png", "", "")
	if resp.StatusCode != 200 || !bytes.Equal(again, want.Bytes()) {
		t.Fatalf("after the job finished again: %d, the new image %v, the old one %v", resp.StatusCode, bytes.Equal(again, want.Bytes()), bytes.Equal(again, first))
	}
	if err := cache.Sweep(jobGeneration(sj)); err != nil {
		t.Fatal(err)
	}
	if fileExists(oldPath) {
		t.Fatal("the sweep kept the PNG of a past finish")
	}
	now, _ := sj.Job("small")
	if p, _ := cache.path(now); !fileExists(p) {
		t.Fatal("the sweep removed the current PNG")
	}
}

// TestRenderHoldsNoLock: while a PNG render is stalled on a client that reads nothing, the job
// state still applies commands.
func TestRenderHoldsNoLock(t *testing.T) {
	srv, sj, _, _ := newRenderFixture(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(conn, "GET /api/v1/jobs/big/result.png HTTP/1.1\r\nHost: x\r\n\r\n")
	deadline := time.Now().Add(10 * time.Second)
	for sj.rowsRead.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan any, 1)
	go func() {
		p := compute.MandelParams{Width: 8, Height: 8, Span: 3, MaxIter: 10}
		done <- sj.ApplyCommand(compute.Submit{ID: "later", Time: t0, Spec: compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &p}}, 0)
	}()
	select {
	case r := <-done:
		if err, ok := r.(error); ok {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a command could not apply while a render waited on its client")
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestPNGCacheDropsATornFile: a cached PNG cut short (what a power cut leaves of a file renamed
// into place before its data reached the disk) is removed when the cache opens at the next
// start, and rendered again; before, it was taken as whole and served, broken, for as long as
// the job stayed finished.
func TestPNGCacheDropsATornFile(t *testing.T) {
	srv, sj, cache, _ := newRenderFixture(t)
	_, first := do(t, "GET", srv.URL+"/api/v1/jobs/small/result.png", "", "")
	small, _ := sj.Job("small")
	path, _ := cache.path(small)
	if err := os.Truncate(path, int64(len(first)/2)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPNGCache(cache.Dir()); err != nil { // the next start
		t.Fatal(err)
	}
	if fileExists(path) {
		t.Error("the torn PNG is still in the cache after a restart")
	}
	resp, again := do(t, "GET", srv.URL+"/api/v1/jobs/small/result.png", "", "")
	if resp.StatusCode != 200 || !bytes.Equal(again, first) {
		t.Fatalf("after the restart: %d, %d bytes served of %d", resp.StatusCode, len(again), len(first))
	}
}
