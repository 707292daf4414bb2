package webui

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

func TestPiResult(t *testing.T) {
	srv, fj := newJobServer(t)
	fj.add(compute.Job{ID: "p", Kind: compute.KindPi, Spec: piSpec(1000, 0), State: compute.StateDone, DoneUnits: 1000, TotalUnits: 1000})
	fj.pi["p"] = compute.PiResult{Hits: 785, Samples: 1000, Estimate: 3.14, StdError: 4 * math.Sqrt(0.785*0.215/1000)}
	v, err := NewClient(srv.URL, "").Result(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if v.PiResult == nil || v.Hits != 785 || v.Samples != 1000 || v.Estimate != 3.14 || !v.Complete || v.MandelSummary != nil {
		t.Fatalf("%+v", v)
	}
	_, data := do(t, "GET", srv.URL+"/api/v1/jobs/p/result", "", "")
	for _, k := range []string{`"hits"`, `"samples"`, `"estimate"`, `"std_error"`} {
		if !bytes.Contains(data, []byte(k)) {
			t.Errorf("result lacks %s: %s", k, data)
		}
	}
	// No samples accepted yet: a backend's NaN must not break the JSON.
	fj.add(compute.Job{ID: "q", Kind: compute.KindPi, Spec: piSpec(1000, 0), State: compute.StateQueued, TotalUnits: 1000})
	fj.pi["q"] = compute.PiResult{Estimate: math.NaN(), StdError: math.NaN()}
	if v, err := NewClient(srv.URL, "").Result(context.Background(), "q"); err != nil || v.Estimate != 0 || v.Complete {
		t.Fatalf("empty result: %v %+v", err, v)
	}
	if resp, data := do(t, "GET", srv.URL+"/api/v1/jobs/p/result.raw", "", ""); resp.StatusCode != 404 || !strings.Contains(errMsg(t, data), "pi job") {
		t.Errorf("raw of a pi job: %d %s", resp.StatusCode, data)
	}
}

// addMandel adds a w×h Mandelbrot job whose rows [0, doneRows) are computed
// by the real kernel.
func addMandel(t *testing.T, fj *fakeJobs, id string, w, h, doneRows int) []uint32 {
	t.Helper()
	p := compute.MandelParams{Width: w, Height: h, CenterX: -0.5, CenterY: 0, Span: 3, MaxIter: 200}
	img := make([]uint32, w*h)
	if err := compute.MandelRows(p, 0, doneRows, img); err != nil {
		t.Fatal(err)
	}
	state := compute.StateRunning
	if doneRows == h {
		state = compute.StateDone
	}
	fj.add(compute.Job{ID: id, Kind: compute.KindMandelbrot, Spec: compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &p},
		State: state, DoneUnits: uint64(doneRows), TotalUnits: uint64(h)})
	fj.mu.Lock()
	fj.img[id] = img
	fj.acc[id] = []compute.Range{{Start: 0, End: uint64(doneRows)}}
	fj.mu.Unlock()
	return img
}

func TestMandelRawAndRows(t *testing.T) {
	srv, fj := newJobServer(t)
	img := addMandel(t, fj, "m", 7, 5, 3)
	le := func(c []uint32) []byte {
		var b []byte
		for _, v := range c {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
		return b
	}
	resp, data := do(t, "GET", srv.URL+"/api/v1/jobs/m/result.raw", "", "")
	if resp.StatusCode != 200 || !bytes.Equal(data, le(img)) {
		t.Fatalf("raw: %d, %d bytes", resp.StatusCode, len(data))
	}
	if resp.Header.Get("X-Hydra-Done-Rows") != "3" || resp.Header.Get("X-Hydra-Width") != "7" || resp.Header.Get("Content-Length") != "140" {
		t.Fatalf("headers %v", resp.Header)
	}
	resp, data = do(t, "GET", srv.URL+"/api/v1/jobs/m/result.raw?rows=1-3", "", "")
	if resp.StatusCode != 200 || !bytes.Equal(data, le(img[7:21])) || resp.Header.Get("X-Hydra-Rows") != "1-3" {
		t.Fatalf("rows 1-3: %d %d bytes", resp.StatusCode, len(data))
	}
	for _, q := range []string{"3-1", "2-2", "a-b", "5", "-3", "0-6", "1-99999999999"} {
		resp, data := do(t, "GET", srv.URL+"/api/v1/jobs/m/result.raw?rows="+q, "", "")
		if resp.StatusCode != 400 || !strings.Contains(errMsg(t, data), "rows") {
			t.Errorf("rows=%s: %d %s", q, resp.StatusCode, data)
		}
	}
	v, err := NewClient(srv.URL, "").Result(context.Background(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if v.MandelSummary == nil || v.DoneRows != 3 || v.TotalRows != 5 || v.Width != 7 || v.Complete || v.Links.Raw != "/api/v1/jobs/m/result.raw" {
		t.Fatalf("summary %+v %+v", v, v.MandelSummary)
	}
}

func TestMandelPNG(t *testing.T) {
	srv, fj := newJobServer(t)
	img := addMandel(t, fj, "m", 160, 120, 120)
	resp, data := do(t, "GET", srv.URL+"/api/v1/jobs/m/result.png", "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	pic, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if b := pic.Bounds(); b.Dx() != 160 || b.Dy() != 120 {
		t.Fatalf("size %v", b)
	}
	colours := map[color.RGBA]int{}
	for y := range 120 {
		for x := range 160 {
			r, g, b, a := pic.At(x, y).RGBA()
			c := color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}
			colours[c]++
			if a != 0xffff {
				t.Fatalf("a finished image has a transparent pixel at %d,%d", x, y)
			}
			if img[y*160+x] == 200 && (r|g|b) != 0 {
				t.Fatalf("a pixel inside the set is not black at %d,%d", x, y)
			}
		}
	}
	if len(colours) < 30 {
		t.Fatalf("only %d colours", len(colours))
	}

	// A partial image: unfinished rows are transparent.
	addMandel(t, fj, "half", 40, 30, 10)
	_, data = do(t, "GET", srv.URL+"/api/v1/jobs/half/result.png", "", "")
	pic, err = png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, a := pic.At(5, 20).RGBA(); a != 0 {
		t.Fatal("an unfinished row is not transparent")
	}
	if _, _, _, a := pic.At(5, 5).RGBA(); a != 0xffff {
		t.Fatal("a finished row is not opaque")
	}
}

func TestGradientIsContinuous(t *testing.T) {
	prev := gradient(0)
	for i := 1; i <= 1000; i++ {
		c := gradient(float64(i) / 1000)
		d := max(absDiff(c.R, prev.R), absDiff(c.G, prev.G), absDiff(c.B, prev.B))
		if d > 8 {
			t.Fatalf("jump of %d at t=%.3f", d, float64(i)/1000)
		}
		prev = c
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// TestPNGEncodeAllocatesNoImage checks that colouring does not copy the
// image: encoding 1024² counts allocates far less than an RGBA copy (4 MiB).
func TestPNGEncodeAllocatesNoImage(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const side = 1024
	counts := make([]uint32, side*side)
	for i := range counts {
		counts[i] = uint32(1 + i%97)
	}
	allocs := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if err := renderPNG(io.Discard, imgChunks{side, 64, counts}, "m", &compute.MandelParams{Width: side, Height: side, MaxIter: 100}); err != nil {
				b.Fatal(err)
			}
		}
	})
	if per := allocs.AllocedBytesPerOp(); per > 3<<20 {
		t.Fatalf("encoding allocates %d bytes per image", per)
	}
}

var _ image.Image = (*lazyImage)(nil)

// imgChunks serves an in-memory w-wide image as stored chunks of rows rows each.
type imgChunks struct {
	w, rows int
	img     []uint32
}

func (c imgChunks) MandelChunk(id string, row uint64) (compute.Range, []uint32, error) {
	h := uint64(len(c.img) / c.w)
	start := row / uint64(c.rows) * uint64(c.rows)
	r := compute.Range{Start: start, End: min(start+uint64(c.rows), h)}
	return r, c.img[r.Start*uint64(c.w) : r.End*uint64(c.w)], nil
}

// BenchmarkMandelPNG encodes a 2048² image (4 Mpixels).
func BenchmarkMandelPNG(b *testing.B) {
	const side = 2048
	p := compute.MandelParams{Width: side, Height: side, CenterX: -0.5, Span: 3, MaxIter: 500}
	counts := make([]uint32, side*side)
	if err := compute.MandelRows(p, 0, side, counts); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(side * side)
	b.ResetTimer()
	b.ReportAllocs()
	for range b.N {
		if err := renderPNG(io.Discard, imgChunks{side, 64, counts}, "m", &p); err != nil {
			b.Fatal(err)
		}
	}
}
