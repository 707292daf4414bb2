//go:build linux && amd64

package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

var (
	simdBuildOnce sync.Once
	simdBinPath   string
	simdBuildErr  error
)

// simdBinary builds the node as the release does, with GOEXPERIMENT=simd (the AVX2/AVX-512
// kernels), once per run.
func simdBinary(t *testing.T) string {
	t.Helper()
	simdBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hydra-simd-bin-")
		if err != nil {
			simdBuildErr = err
			return
		}
		extraBuildDirs = append(extraBuildDirs, dir) // removed by TestMain
		simdBinPath = filepath.Join(dir, "hydra")
		if out, err := goRelease("build", []string{"-o", simdBinPath, ".."}).CombinedOutput(); err != nil {
			simdBuildErr = fmt.Errorf("GOEXPERIMENT=simd go build: %v\n%s", err, out)
			return
		}
		nativeKernels.Store(simdBinPath, true)
	})
	if simdBuildErr != nil {
		t.Fatal(simdBuildErr)
	}
	return simdBinPath
}

// cpuHasAVX2 reads the CPU flags the kernel reports.
func cpuHasAVX2(t *testing.T) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "flags") {
			for _, f := range strings.Fields(line) {
				if f == "avx2" {
					return true
				}
			}
			return false
		}
	}
	return false
}

// A cluster of nodes built with GOEXPERIMENT=simd runs the vector kernels (every node reports an
// AVX path), and its results are the definition's bits: the Mandelbrot counts equal this test
// process's portable kernel, the π hits its count.
func TestSystem_SIMDCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	if !cpuHasAVX2(t) {
		t.Skip("this CPU has no AVX2: the SIMD kernels cannot run here")
	}
	bin := simdBinary(t)
	ps, token := startProcClusterBin(t, bin, 3, nil)

	params := compute.MandelParams{Width: 320, Height: 240, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.002, MaxIter: 2000}
	want := make([]uint32, params.Width*params.Height)
	if err := compute.MandelRows(params, 0, params.Height, want); err != nil {
		t.Fatal(err)
	}
	mandel := submitJob(t, ps[1], token, map[string]any{"kind": "mandelbrot", "width": params.Width, "height": params.Height,
		"center_x": params.CenterX, "center_y": params.CenterY, "span": params.Span, "max_iter": params.MaxIter})
	const samples, seed = 200_000_000, 11
	pi := submitJob(t, ps[2], token, map[string]any{"kind": "pi", "samples": samples, "seed": seed})

	kernels := watchKernels(t, ps[0], len(ps))
	waitDone(t, ps, mandel, 120*time.Second)
	waitDone(t, ps, pi, 120*time.Second)
	for _, p := range ps {
		var raw []byte
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+mandel+"/result.raw", nil, &raw)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 4*len(want) {
			t.Fatalf("%s: %d bytes, want %d", p.name, len(raw), 4*len(want))
		}
		for i, w := range want {
			if got := binary.LittleEndian.Uint32(raw[4*i:]); got != w {
				t.Fatalf("%s: pixel %d = %d, the definition gives %d", p.name, i, got, w)
			}
		}
	}
	checkPiExact(t, ps, pi, seed, samples)

	got := <-kernels
	for _, p := range ps {
		if k := got[p.id]; !vectorPath(k) {
			t.Errorf("%s reports kernel path %q, want a SIMD path (avx512, avx2…); all: %v", p.name, k, got)
		}
	}
	t.Logf("kernel paths: %v", got)
}

// vectorPath reports whether a reported kernel path ("avx512", or per kernel
// "pi=avx512,mandelbrot=avx2x3" when calibration chose different ones) names a vector
// path for at least one kernel: a build without the SIMD kernels reports "portable" only.
func vectorPath(k string) bool {
	for part := range strings.SplitSeq(k, ",") {
		name := part
		if _, after, ok := strings.Cut(part, "="); ok {
			name = after
		}
		if strings.HasPrefix(name, "avx") {
			return true
		}
	}
	return false
}

// watchKernels reads p's event stream until the coordinator's activity names a kernel path for n
// nodes, and sends them (node ID → path); after 60 s it sends what it has.
func watchKernels(t *testing.T, p *proc, n int) <-chan map[string]string {
	t.Helper()
	out := make(chan map[string]string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", p.api+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer resp.Body.Close()
		seen := map[string]string{}
		defer func() { out <- seen }()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 8<<20)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "activity":
				var a struct {
					Nodes map[string]struct {
						Kernel string `json:"kernel"`
					} `json:"nodes"`
				}
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &a) != nil {
					continue
				}
				for id, na := range a.Nodes {
					if na.Kernel != "" {
						seen[id] = na.Kernel
					}
				}
				if len(seen) >= n {
					return
				}
			case line == "":
				event = ""
			}
		}
	}()
	return out
}
