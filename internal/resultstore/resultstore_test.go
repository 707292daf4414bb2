package resultstore

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

func rec(job string, start, end uint64, payload string) compute.StoredResult {
	return compute.StoredResult{Chunk: compute.Chunk{Job: job, Range: compute.Range{Start: start, End: end}}, Payload: []byte(payload)}
}

// stores are the implementations the contract is checked against: the node's (bbolt) and the
// one compute's own tests use (memory), so that both behave alike.
func stores(t *testing.T) map[string]compute.ResultStore {
	b, err := Open(filepath.Join(t.TempDir(), "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return map[string]compute.ResultStore{"bolt": b, "memory": compute.NewMemResults()}
}

func collect(t *testing.T, v compute.ResultView, job string) []compute.StoredResult {
	t.Helper()
	var out []compute.StoredResult
	if err := v.Each(job, func(r compute.StoredResult) error {
		r.Payload = bytes.Clone(r.Payload)
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestResultStore_Contract(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			if err := s.Put([]compute.StoredResult{rec("a", 20, 30, "c"), rec("a", 0, 10, "a"), rec("a", 10, 20, "b"), rec("b", 0, 5, "x")}); err != nil {
				t.Fatal(err)
			}
			if r, ok, err := s.Get("a", 10); err != nil || !ok || string(r.Payload) != "b" || r.Range != (compute.Range{Start: 10, End: 20}) {
				t.Fatalf("Get a@10 = %+v %v %v", r, ok, err)
			}
			if _, ok, err := s.Get("a", 11); err != nil || ok {
				t.Fatalf("Get a@11: found %v, err %v; want nothing", ok, err)
			}
			if _, ok, err := s.Get("nope", 0); err != nil || ok {
				t.Fatalf("Get of an unknown job: found %v, err %v", ok, err)
			}

			v, err := s.View()
			if err != nil {
				t.Fatal(err)
			}
			// Writes after the view do not show in it. They run on their own goroutine: bbolt's
			// writer waits for open read transactions when it must grow its memory map.
			wrote := make(chan error, 1)
			go func() {
				err := s.Put([]compute.StoredResult{rec("a", 30, 40, "d")})
				if err == nil {
					err = s.DeleteJob("b")
				}
				wrote <- err
			}()
			if name == "memory" { // never waits: check the view after the writes for sure
				if err := <-wrote; err != nil {
					t.Fatal(err)
				}
				wrote <- nil
			}
			got := collect(t, v, "a")
			if len(got) != 3 || string(got[0].Payload) != "a" || string(got[1].Payload) != "b" || string(got[2].Payload) != "c" {
				t.Fatalf("view of a: %+v; want a, b, c in range order", got)
			}
			if got := collect(t, v, "b"); len(got) != 1 {
				t.Fatalf("view of b after DeleteJob: %d records; want the 1 it had", len(got))
			}
			for _, tc := range []struct {
				at          uint64
				found       bool
				start, next uint64
			}{
				{0, true, 0, 10}, {5, true, 0, 10}, {10, true, 10, 20}, {25, true, 20, math.MaxUint64}, {math.MaxUint64, true, 20, math.MaxUint64},
			} {
				r, found, next, err := v.Around("a", tc.at)
				if err != nil || found != tc.found || next != tc.next || (found && r.Range.Start != tc.start) {
					t.Fatalf("Around(a, %d) = %v start %d next %d err %v; want %v start %d next %d", tc.at, found, r.Range.Start, next, err, tc.found, tc.start, tc.next)
				}
			}
			if _, found, next, err := v.Around("nope", 3); err != nil || found || next != math.MaxUint64 {
				t.Fatalf("Around of an unknown job: %v %d %v", found, next, err)
			}
			stop := errors.New("stop")
			n := 0
			if err := v.Each("a", func(compute.StoredResult) error { n++; return stop }); err != stop || n != 1 {
				t.Fatalf("Each stops at fn's first error: err %v after %d calls", err, n)
			}
			v.Release()
			v.Release()
			if err := v.Each("a", func(compute.StoredResult) error { return nil }); err == nil {
				t.Fatal("Each on a released view succeeded")
			}
			select {
			case err := <-wrote:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the writes did not finish once the view was released")
			}

			v, _ = s.View()
			if _, found, next, _ := v.Around("a", 35); !found || next != math.MaxUint64 {
				t.Fatalf("the new view misses the record put after the old one")
			}
			if got := collect(t, v, "b"); len(got) != 0 {
				t.Fatalf("b has %d records after DeleteJob", len(got))
			}
			v.Release()

			if err := s.Delete("a", 10); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := s.Get("a", 10); ok {
				t.Fatal("a@10 still there after Delete")
			}
			if err := s.Clear(); err != nil {
				t.Fatal(err)
			}
			v, _ = s.View()
			defer v.Release()
			if got := collect(t, v, "a"); len(got) != 0 {
				t.Fatalf("a has %d records after Clear", len(got))
			}
		})
	}
}

// Open starts from an empty store whatever was in the file: raft replays into it.
func TestOpen_RemovesTheOldStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.db")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put([]compute.StoredResult{rec("a", 0, 1, "x")}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if b, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, ok, _ := b.Get("a", 0); ok {
		t.Fatal("a record survived Open")
	}
	// Garbage where the file was is replaced too.
	b.Close()
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xee}, 1<<14), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err = Open(path); err != nil {
		t.Fatalf("open over a damaged old file: %v", err)
	}
}

// A job state on the bbolt store: results stored, an image read back row by row, a snapshot of
// it restored into a second state on another file gives the same image.
func TestJobStoreOnBolt_SnapshotRestore(t *testing.T) {
	open := func() *compute.JobStore {
		b, err := Open(filepath.Join(t.TempDir(), "results.db"))
		if err != nil {
			t.Fatal(err)
		}
		s := compute.NewJobStore(b)
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	now := time.Unix(1_700_000_000, 0)
	spec := compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: 8, Height: 6, Span: 3, MaxIter: 50}}
	if res := s.ApplyCommand(compute.Submit{ID: "m", Spec: spec, Time: now}, 1); res != nil {
		t.Fatal(res)
	}
	var items []compute.ChunkResult
	for _, r := range []compute.Range{{Start: 0, End: 2}, {Start: 4, End: 6}} {
		rows := make([]uint32, int(r.Len())*spec.Mandel.Width)
		if err := compute.MandelRows(*spec.Mandel, int(r.Start), int(r.End), rows); err != nil {
			t.Fatal(err)
		}
		items = append(items, compute.ChunkResult{Chunk: compute.Chunk{Job: "m", Range: r}, Node: "n", Payload: compute.EncodeMandelPayload(rows)})
	}
	out, ok := s.ApplyCommand(compute.Results{Time: now, Items: items}, 2).(*compute.ResultsOutcome)
	if !ok || out.Accepted != 2 {
		t.Fatalf("results: %+v", out)
	}
	// Rows 2–3 are a gap up to the chunk at 4; row 5 is inside the chunk [4, 6).
	if r, counts, err := s.MandelChunk("m", 2); err != nil || counts != nil || r != (compute.Range{Start: 2, End: 4}) {
		t.Fatalf("MandelChunk(2) = %v, %d counts, %v; want the gap [2, 4)", r, len(counts), err)
	}
	if r, counts, err := s.MandelChunk("m", 5); err != nil || len(counts) != 16 || r != (compute.Range{Start: 4, End: 6}) {
		t.Fatalf("MandelChunk(5) = %v, %d counts, %v; want [4, 6) with 16 counts", r, len(counts), err)
	}
	want, err := s.MandelImage("m")
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := open()
	if err := r.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	got, err := r.MandelImage("m")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || !equal(got, want) {
		t.Fatal("the restored image differs")
	}
	if res := r.ApplyCommand(compute.Delete{Job: "m"}, 3); res != nil {
		t.Fatal(res)
	}
	if _, err := r.MandelImage("m"); !errors.Is(err, compute.ErrNoSuchJob) {
		t.Fatalf("image of a deleted job: %v", err)
	}
}

func equal(a, b []uint32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
