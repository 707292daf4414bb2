package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

var (
	cheatOnce sync.Once
	cheatPath string
	cheatErr  error
)

// cheatBinary builds hydra with the cheat tag: a node that can be told to
// return wrong results (--cheat-rate).
func cheatBinary(t *testing.T) string {
	t.Helper()
	cheatOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hydra-cheat-")
		if err != nil {
			cheatErr = err
			return
		}
		cheatPath = filepath.Join(dir, "hydra")
		if out, err := exec.Command("go", "build", "-tags", "cheat", "-o", cheatPath, "..").CombinedOutput(); err != nil {
			cheatErr = fmt.Errorf("go build -tags cheat: %v\n%s", err, out)
		}
	})
	if cheatErr != nil {
		t.Fatal(cheatErr)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(cheatPath)) })
	return cheatPath
}

func nodeAudit(t *testing.T, p *proc, id string) (webui.NodeAudit, error) {
	st, err := p.status()
	if err != nil {
		return webui.NodeAudit{}, err
	}
	for _, n := range st.Nodes {
		if n.ID == id {
			return n.Audit, nil
		}
	}
	return webui.NodeAudit{}, fmt.Errorf("%s does not list node %s", p.name, id)
}

// TestSystem_AuditsCatchACheater: five real nodes, one of them a cheat
// build returning a wrong count in one block of 10 % of its chunks. Every
// chunk is audited (--audit-trust-after keeps every node new, so the test
// needs tens of chunks, not hundreds): the cheater is quarantined, honest
// nodes never fail an audit, every result equals the reference, and after
// `trust reset` the cheater is new again.
func TestSystem_AuditsCatchACheater(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	cheat := cheatBinary(t)
	const cheater = 4
	ps, token := startProcClusterBins(t, 5, func(i int) []string {
		args := []string{"--chunk-target", "100ms", "--audit-trust-after", "100000"}
		if i == cheater {
			args = append(args, "--cheat-rate", "0.1")
		}
		return args
	}, func(i int) string {
		if i == cheater {
			return cheat
		}
		return ""
	})
	type piJob struct {
		id            string
		seed, samples uint64
	}
	var pis []piJob
	var mandels []string
	mp := compute.MandelParams{Width: 120, Height: 160, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.01, MaxIter: 600}
	submit := func(k int) {
		if k%2 == 0 {
			j := piJob{seed: uint64(k + 1), samples: 60_000_000}
			j.id = submitJob(t, ps[k%4], token, map[string]any{"kind": "pi", "samples": j.samples, "seed": j.seed})
			pis = append(pis, j)
			return
		}
		mandels = append(mandels, submitJob(t, ps[k%4], token, map[string]any{"kind": "mandelbrot", "width": mp.Width, "height": mp.Height,
			"center_x": mp.CenterX, "center_y": mp.CenterY, "span": mp.Span, "max_iter": mp.MaxIter}))
	}
	for k := range 4 {
		submit(k)
	}
	// More jobs until the cheater has cheated its way into quarantine.
	k := 4
	waitFor(t, 240*time.Second, "the cheater quarantined", func() error {
		a, err := nodeAudit(t, ps[0], ps[cheater].id)
		if err != nil {
			return err
		}
		if a.State == "quarantined" {
			return nil
		}
		busy := 0
		for _, j := range pis {
			if v, err := jobOn(ps[0], j.id); err == nil && v.State != compute.StateDone {
				busy++
			}
		}
		for _, id := range mandels {
			if v, err := jobOn(ps[0], id); err == nil && v.State != compute.StateDone {
				busy++
			}
		}
		if busy < 2 && k < 40 {
			submit(k)
			k++
		}
		return fmt.Errorf("cheater %s: %d passed, %d failed", a.State, a.Passed, a.Failed)
	})
	for _, j := range pis {
		waitDone(t, ps, j.id, 240*time.Second)
	}
	for _, id := range mandels {
		waitDone(t, ps, id, 240*time.Second)
	}
	for _, j := range pis {
		checkPiExact(t, ps, j.id, j.seed, j.samples)
	}
	want := make([]uint32, mp.Width*mp.Height)
	if err := compute.MandelRows(mp, 0, mp.Height, want); err != nil {
		t.Fatal(err)
	}
	redone := uint64(0)
	for _, id := range mandels {
		checkMandelExact(t, ps[0], id, want)
	}
	for _, id := range append(mandels, func() (ids []string) {
		for _, j := range pis {
			ids = append(ids, j.id)
		}
		return
	}()...) {
		var v webui.JobView
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ps[0].client("").Do(ctx, "GET", "/api/v1/jobs/"+id, nil, &v)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if v.AuditedUnits == 0 {
			t.Errorf("job %s: no units audited", id)
		}
		redone += v.RedoneUnits
	}
	for i, p := range ps {
		if i == cheater {
			continue
		}
		a, err := nodeAudit(t, ps[0], p.id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Failed != 0 || a.State == "quarantined" || a.Passed == 0 {
			t.Errorf("honest node %s: %+v", p.name, a)
		}
	}
	t.Logf("%d jobs (%d π, %d Mandelbrot), %d units redone after failed audits", len(pis)+len(mandels), len(pis), len(mandels), redone)

	// An admin clears the cheater: new again, and it may work.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ps[1].client(token).TrustReset(ctx, ps[cheater].name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the cheater new again", func() error {
		a, err := nodeAudit(t, ps[2], ps[cheater].id)
		if err == nil && (a.State != "new" || a.Failed != 0) {
			err = fmt.Errorf("%+v", a)
		}
		return err
	})
}

// checkMandelExact compares a Mandelbrot job's raw counts with want.
func checkMandelExact(t *testing.T, p *proc, id string, want []uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var raw []byte
	if err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id+"/result.raw", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 4*len(want) {
		t.Fatalf("job %s: %d bytes, want %d", id, len(raw), 4*len(want))
	}
	for i, w := range want {
		if got := binary.LittleEndian.Uint32(raw[4*i:]); got != w {
			t.Fatalf("job %s: pixel %d = %d, want %d", id, i, got, w)
		}
	}
}
