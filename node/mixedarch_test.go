//go:build unix

package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// arm64Binary cross-compiles the node for linux/arm64 as the release does
// and checks that this machine can run it (qemu-user through binfmt_misc);
// it skips otherwise.
func arm64Binary(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH == "arm64" {
		t.Skip("already on arm64")
	}
	bin := filepath.Join(t.TempDir(), "hydra-arm64")
	if out, err := goRelease("build", []string{"-o", bin, ".."}, "GOOS=linux", "GOARCH=arm64").CombinedOutput(); err != nil {
		t.Fatalf("build arm64: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
		t.Skipf("cannot run an arm64 binary here (qemu-user-static with binfmt_misc needed; scripts/test registers it): %v %s", err, out)
	}
	return bin
}

// An arm64 node (under qemu-user) joins an amd64 cluster with --join, takes
// chunks, and the Mandelbrot counts are the amd64 ones bit for bit: Go may
// fuse a*b+c into an FMA on arm64, which the kernel forbids.
func TestSystem_MixedArchitectureExact(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	arm := arm64Binary(t)
	// Slow amd64 nodes, so the emulated one gets its share of the rows.
	ps, token := startProcCluster(t, 2, func(int) []string { return []string{"--cpu-limit", "10"} })
	base := filepath.Dir(ps[0].dir)
	emu := &proc{t: t, name: "arm64", dir: filepath.Join(base, "arm64"), p2pPort: freeTCPPort(t), httpPort: freeTCPPort(t), bin: arm}
	emu.api = fmt.Sprintf("http://127.0.0.1:%d", emu.httpPort)
	emu.args = []string{"node", "--data", emu.dir, "--name", "arm64", "--mdns=false", "--dht=false",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", emu.p2pPort), "--http", fmt.Sprintf("127.0.0.1:%d", emu.httpPort),
		"--cpus", "1", "--dedicated", "--voter", "never", "--raft-multiplier", "2", "--join", ps[0].joinAddr()}
	emu.start()
	t.Cleanup(emu.kill)
	t.Cleanup(func() { // the amd64 nodes' logs are dumped by startProcCluster; the emulated node's too
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", emu.name, emu.dumpLog())
		}
	})
	waitFor(t, 90*time.Second, "the arm64 node in the cluster", func() error {
		st, err := emu.status()
		if err != nil {
			return err
		}
		emu.id = st.Self.ID
		for _, n := range st.Nodes {
			// Online and idle: its compute process runs and it asks for work.
			if n.ID == emu.id && n.Role == "nonvoter" && n.Arch == "arm64" && n.Online && n.State == "idle" {
				return nil
			}
		}
		return fmt.Errorf("arm64 node not a member yet (leader %q)", st.Leader)
	})
	params := compute.MandelParams{Width: 640, Height: 480, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.00002, MaxIter: 20000}
	want := make([]uint32, params.Width*params.Height)
	if err := compute.MandelRows(params, 0, params.Height, want); err != nil {
		t.Fatal(err)
	}
	// The fast nodes may finish a job before the emulated one's first chunk
	// comes back; a few jobs make sure it takes part in one.
	var armRows uint64
	for attempt := 0; attempt < 3 && armRows == 0; attempt++ {
		id := submitJob(t, ps[1], token, map[string]any{"kind": "mandelbrot", "width": params.Width, "height": params.Height,
			"center_x": params.CenterX, "center_y": params.CenterY, "span": params.Span, "max_iter": params.MaxIter})
		waitDone(t, append(ps, emu), id, 300*time.Second)
		armRows = checkMandelJob(t, ps[0], emu, id, want, emu.id)
	}
	if armRows == 0 {
		t.Fatalf("the arm64 node computed no rows in 3 jobs; its log:\n%s", emu.dumpLog())
	}
	// Audits recomputed the nodes' chunks across the architectures: no
	// honest node failed one, none is quarantined, and the emulated node's
	// chunks were checked.
	for _, p := range append(ps, emu) {
		a, _, err := nodeAudit(ps[0], p.id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Failed != 0 || a.State == "quarantined" || p == emu && a.Passed == 0 {
			t.Errorf("honest node %s: audits %+v", p.name, a)
		}
	}
	// The amd64 nodes ran the portable kernels they were told to run
	// (proc.start), although they are the release's build with the vector ones.
	for _, p := range ps {
		log, err := os.ReadFile(p.logPath())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, []byte("kernel=portable")) || bytes.Contains(log, []byte("kernel=avx")) {
			t.Errorf("%s did not run the portable kernels; its log:\n%s", p.name, p.dumpLog())
		}
	}
	t.Logf("the arm64 node computed %d of %d rows", armRows, params.Height)
}

// checkMandelJob checks the job's counts, as the emulated node serves them,
// against want, and returns the rows node computed.
func checkMandelJob(t *testing.T, p, emu *proc, id string, want []uint32, node string) uint64 {
	t.Helper()
	var view struct {
		Nodes []compute.NodeContribution `json:"nodes"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id, nil, &view); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := emu.client("").Do(ctx, "GET", "/api/v1/jobs/"+id+"/result.raw", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 4*len(want) {
		t.Fatalf("%d bytes, want %d", len(raw), 4*len(want))
	}
	for i, w := range want {
		if got := binary.LittleEndian.Uint32(raw[4*i:]); got != w {
			t.Fatalf("pixel %d = %d, want %d", i, got, w)
		}
	}
	for _, n := range view.Nodes {
		if n.Node == node {
			return n.Units
		}
	}
	return 0
}

// TestSystem_WasmSameBitsOnArm64: the examples' modules give on arm64 (wazero's arm64 compiler,
// under qemu-user) the values recorded on amd64, bit for bit: the examples' tests,
// cross-compiled and run on the emulated CPU.
func TestSystem_WasmSameBitsOnArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	arm64Binary(t) // checks qemu-user runs arm64 binaries here
	for _, ex := range []string{"collatz", "primes", "montecarlo"} {
		exe := filepath.Join(t.TempDir(), ex+".test")
		build := goRelease("test", []string{"-c", "-o", exe, "../examples/" + ex}, "GOOS=linux", "GOARCH=arm64")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s tests for arm64: %v\n%s", ex, err, out)
		}
		run := exec.Command(exe, "-test.run", "SameBitsEverywhere", "-test.v")
		run.Dir = filepath.Join("..", "examples", ex)
		out, err := run.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestSameBitsEverywhere")) {
			t.Fatalf("%s on arm64: %v\n%s", ex, err, out)
		}
		t.Logf("%s: same bits on arm64 (qemu)", ex)
	}
}
