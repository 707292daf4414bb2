//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/procstat"
	"github.com/hydra-compute/hydra/webui"
)

// jobStream keeps up to three jobs unfinished, submitting a new one through a random live
// node whenever fewer are.
func (c *chaos) jobStream(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(1+c.jrng.IntN(4)) * time.Second): // the users' pace
		}
		unfinished := 0
		c.mu.Lock()
		for _, j := range c.jobs {
			if !c.done[j.id] {
				unfinished++
			}
		}
		c.mu.Unlock()
		if unfinished >= 3 {
			continue
		}
		j := c.newJob()
		live := c.live()
		if len(live) == 0 {
			continue
		}
		p := live[c.jrng.IntN(len(live))]
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var ji jobInfo
		err := p.client(c.token).Do(ctx, "POST", "/api/v1/jobs", j.body(c.primesModule), &ji)
		cancel()
		if err != nil {
			c.logf("submit %s via %s: %v", j.kind, p.name, err)
			continue
		}
		j.id = ji.ID
		c.mu.Lock()
		c.jobs = append(c.jobs, j)
		c.counts["job-"+j.kind]++
		c.mu.Unlock()
		c.logf("submitted %s job %s via %s", j.kind, j.id, p.name)
	}
}

func (c *chaos) newJob() *chaosJob {
	switch c.jrng.IntN(3) {
	case 0:
		return &chaosJob{kind: "pi", pi: &compute.PiParams{Samples: uint64(200_000_000 + c.jrng.IntN(400_000_000)), Seed: c.jrng.Uint64N(1000)}}
	case 1:
		return &chaosJob{kind: "mandelbrot", mandel: &compute.MandelParams{Width: 320, Height: 180 + c.jrng.IntN(60),
			CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.002 + float64(c.jrng.IntN(10))*0.001, MaxIter: 1000 + c.jrng.IntN(2000)}}
	default:
		return &chaosJob{kind: "wasm", items: primesItems[c.jrng.IntN(len(primesItems))]}
	}
}

func (j *chaosJob) body(module string) map[string]any {
	switch j.kind {
	case "pi":
		return map[string]any{"kind": "pi", "samples": j.pi.Samples, "seed": j.pi.Seed}
	case "mandelbrot":
		m := j.mandel
		return map[string]any{"kind": "mandelbrot", "width": m.Width, "height": m.Height, "center_x": m.CenterX,
			"center_y": m.CenterY, "span": m.Span, "max_iter": m.MaxIter}
	default:
		return map[string]any{"kind": "wasm", "module": module, "items": j.items, "reduce": "sum", "params": `{"k":2}`}
	}
}

// errNoAnswer marks a check whose fetch got no HTTP answer at all (the node went down between
// its job view and its result: a power cut or hydra leave in between), not a wrong answer.
var errNoAnswer = errors.New("no answer")

// check fetches j's result from p and compares it with the reference.
func (c *chaos) check(p *proc, j *chaosJob) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer func() {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = fmt.Errorf("%w: %w", errNoAnswer, err)
		}
	}()
	cl := p.client("")
	switch j.kind {
	case "pi":
		var r compute.PiResult
		if err := cl.Do(ctx, "GET", "/api/v1/jobs/"+j.id+"/result", nil, &r); err != nil {
			return err
		}
		if j.wantHits == nil {
			w, _ := compute.PiHitsParallel(j.pi.Seed, 0, j.pi.Samples, runtime.NumCPU(), nil)
			j.wantHits = &w
		}
		want := *j.wantHits
		if r.Hits != want || r.Samples != j.pi.Samples {
			return fmt.Errorf("%s: π job %s: hits %d of %d, want %d of %d", p.name, j.id, r.Hits, r.Samples, want, j.pi.Samples)
		}
	case "mandelbrot":
		if j.wantMandel == nil {
			w := make([]uint32, j.mandel.Width*j.mandel.Height)
			if err := compute.MandelRows(*j.mandel, 0, j.mandel.Height, w); err != nil {
				return err
			}
			j.wantMandel = w
		}
		var raw []byte
		if err := cl.Do(ctx, "GET", "/api/v1/jobs/"+j.id+"/result.raw", nil, &raw); err != nil {
			return err
		}
		if len(raw) != 4*len(j.wantMandel) {
			return fmt.Errorf("%s: Mandelbrot job %s: %d bytes, want %d", p.name, j.id, len(raw), 4*len(j.wantMandel))
		}
		for i, w := range j.wantMandel {
			if got := uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24; got != w {
				return fmt.Errorf("%s: Mandelbrot job %s: pixel %d = %d, want %d", p.name, j.id, i, got, w)
			}
		}
	default:
		var r webui.ResultView
		if err := cl.Do(ctx, "GET", "/api/v1/jobs/"+j.id+"/result", nil, &r); err != nil {
			return err
		}
		if r.WasmResult == nil || !r.Complete || r.Value != c.primesNative[j.items] {
			return fmt.Errorf("%s: wasm job %s: %+v, native %s", p.name, j.id, r.WasmResult, c.primesNative[j.items])
		}
	}
	return nil
}

// watch checks the running invariants every 2 s: no unexpected exit, RSS bounded, jobs that
// are done on some node verified, and jobs seen done still done.
func (c *chaos) watch(stop chan struct{}) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		for _, p := range c.ps {
			exited := false
			select {
			case <-p.exited:
				exited = true
			default:
			}
			if exited && !downKinds[c.busy[p]] && !c.mayExit[p] {
				c.mu.Unlock()
				c.fail(fmt.Errorf("%s exited unexpectedly (%v)", p.name, p.cmd.ProcessState))
				c.mu.Lock()
				continue
			}
			if !exited {
				kb, _, _ := procstat.RSSKB(p.cmd.Process.Pid) // with its compute process
				if rss := kb << 10; rss > c.maxRSS[p.name] {
					c.maxRSS[p.name] = rss
					if rss > 1<<30 {
						c.mu.Unlock()
						c.fail(fmt.Errorf("%s RSS %d MiB", p.name, rss>>20))
						c.mu.Lock()
					}
				}
			}
		}
		jobs := append([]*chaosJob(nil), c.jobs...)
		c.mu.Unlock()
		live := c.live()
		// The leader the usable nodes agree on: a node cut off or paused may still believe it
		// leads, with a state older than what the others have applied.
		var leader *proc
		if st, err := c.leaderView(); err == nil {
			for _, p := range c.ps {
				if p.id == st.Self.ID {
					leader = p
				}
			}
		}
		for _, j := range jobs {
			c.mu.Lock()
			seen := c.done[j.id]
			c.mu.Unlock()
			if seen {
				// Done stays done: the leader (the state every node converges to) must
				// never show a finished job otherwise. A lagging follower may, until it
				// catches up; the settle phase checks every node. A few jobs a round, at
				// random (a long run has hundreds).
				if leader == nil || rand.IntN(len(jobs)) >= 8 {
					continue
				}
				if v, err := fetchJobView(leader, j.id); err == nil && v.State != compute.StateDone && v.State != compute.StateFailed {
					c.fail(fmt.Errorf("job %s (%s) was finished, the leader %s now shows it %s %d/%d", j.id, j.kind, leader.name, v.State, v.DoneUnits, v.TotalUnits))
				}
				continue
			}
			for _, p := range live {
				v, err := fetchJobView(p, j.id)
				if err != nil {
					continue
				}
				switch v.State {
				case compute.StateDone:
					if err := c.check(p, j); errors.Is(err, errNoAnswer) {
						continue // went down since its job view: ask the next node
					} else if err != nil {
						c.fail(err)
						break
					}
					c.logf("job %s (%s) done, exact on %s", j.id, j.kind, p.name)
				case compute.StateFailed:
					c.logf("job %s (%s) failed on %s: %s", j.id, j.kind, p.name, v.Reason)
				}
				if v.State == compute.StateDone || v.State == compute.StateFailed {
					c.mu.Lock()
					c.done[j.id] = true
					c.mu.Unlock()
				}
				break
			}
		}
	}
}

// settle waits, once the faults are over, for every job to finish and every node to agree,
// then checks every result on every node.
func (c *chaos) settle(limit time.Duration) {
	t := c.t
	c.logf("settling (at most %s)", limit)
	for _, p := range c.ps {
		select {
		case <-p.exited:
			t.Fatalf("%s is not running after the faults", p.name)
		default:
		}
	}
	waitFor(t, limit, "every node names the same leader and members", func() error {
		var leader, members string
		for _, p := range c.ps {
			st, err := p.status()
			if err != nil {
				return err
			}
			var ms []string
			for _, ns := range st.Nodes {
				if ns.Role != webui.RoleNone {
					ms = append(ms, ns.ID)
				}
			}
			sort.Strings(ms)
			m := strings.Join(ms, ",")
			if st.Leader == "" {
				return fmt.Errorf("%s has no leader", p.name)
			}
			if leader == "" {
				leader, members = st.Leader, m
			}
			if st.Leader != leader || m != members {
				return fmt.Errorf("%s: leader %s, members %d, differs from %s's view", p.name, st.Leader, len(ms), c.ps[0].name)
			}
			if len(ms) != len(c.ps) {
				return fmt.Errorf("%s lists %d members", p.name, len(ms))
			}
		}
		return nil
	})
	waitFor(t, limit, "every job finished on every node", func() error {
		for _, j := range c.jobs {
			for _, p := range c.ps {
				v, err := fetchJobView(p, j.id)
				if err != nil {
					return err
				}
				switch v.State {
				case compute.StateDone:
				case compute.StateFailed:
					if v.Reason == "" {
						t.Fatalf("%s: job %s failed with no reason", p.name, j.id)
					}
				default:
					return fmt.Errorf("%s: job %s (%s) %s %d/%d", p.name, j.id, j.kind, v.State, v.DoneUnits, v.TotalUnits)
				}
			}
		}
		return nil
	})
	failed := 0
	for _, j := range c.jobs {
		for _, p := range c.ps {
			v := jobView(t, p, j.id)
			if v.State == compute.StateFailed {
				c.logf("job %s (%s) failed on %s: %s", j.id, j.kind, p.name, v.Reason)
				failed++
				continue
			}
			if v.AuditedUnits > v.DoneUnits || v.ClearedUnits > v.DoneUnits || v.DoneUnits != v.TotalUnits {
				t.Fatalf("%s: job %s: audited %d, cleared %d, done %d of %d", p.name, j.id, v.AuditedUnits, v.ClearedUnits, v.DoneUnits, v.TotalUnits)
			}
			if err := c.check(p, j); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rss []string
	for _, p := range c.ps {
		rss = append(rss, fmt.Sprintf("%s %d MiB", p.name, c.maxRSS[p.name]>>20))
	}
	c.logf("%d jobs, every done one exact on all %d nodes (%d failed views); peak RSS %s", len(c.jobs), len(c.ps), failed, strings.Join(rss, ", "))
}
