package child

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/wire"
)

// progressEvery is how often the child reports a running task's finished prefix. The
// coordinator extends a lease's deadline on progress, and the UI shows it.
const progressEvery = 250 * time.Millisecond

// Block sizes. π: 2²⁰ samples is about 1–3 ms on a current x86 core (more on a 32-bit ARM board,
// hence the smaller block there); a π block is never cut, so a stop loses no sample. Mandelbrot:
// 512–4096 pixels but never more than one row, cut inside when stop fires (compute polls every
// ~2²⁰ iterations). A stop keeps the contiguous prefix of whole rows, so it loses the partial row
// in progress and blocks finished beyond it by other workers: about a row per worker
// (BenchmarkPauseLostWork).
const piBlock = 1 << (17 + 3*(strconv.IntSize/64)) // 2²⁰ on 64-bit, 2¹⁷ on 32-bit

const (
	mandelMinBlock = 512
	mandelMaxBlock = 4096
)

// mandelBlock is the block size, in pixels, for n pixels of rows w wide on cpus workers: about 8
// blocks per worker, within [mandelMinBlock, mandelMaxBlock], and at most one row so that a stop
// throws away little finished work.
func mandelBlock(n, w, cpus uint64) uint64 {
	return max(min(max(n/(max(cpus, 1)*8), mandelMinBlock), mandelMaxBlock, w), 1)
}

// Main is the compute child process: `hydra __compute` runs it with the process's standard
// streams. It lowers its own priority first (Linux SCHED_IDLE + nice 19 on every thread, Windows
// idle priority class, macOS background), says hello, then serves the parent's messages until
// `exit` or the end of stdin (the parent is gone: the child must not outlive it). It returns the
// process exit code: 0 after a clean exit, 1 when the parent's stream broke.
//
// The node's stop signals are ignored (SIGINT, SIGTERM, SIGHUP): a Ctrl-C in a terminal, the
// SIGHUP of a closed terminal or SSH session, and a SIGTERM sent to the process group (kill --
// -PGID, a unit with KillMode=control-group) reach the child as well as the node, and the node,
// not the child, decides what to do with the chunk in hand (stop it and keep its prefix). A
// child that died of one lost that chunk's work. The child still ends with its node: the end of
// stdin, the exit message, and on Linux the parent-death SIGKILL.
func Main(stdin io.Reader, stdout io.Writer, stderr io.Writer) int {
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	prio := lowerPriority()
	c := &child{out: bufio.NewWriterSize(stdout, 64<<10), stderr: stderr, gate: newGate(100), blocks: childShm()}
	c.cpus.Store(int32(runtime.GOMAXPROCS(0)))
	c.gate.setCPUs(int(c.cpus.Load()))
	// One P more than kernel workers: the goroutine that reads a stop from
	// the node then runs at once instead of waiting up to 10 ms for Go to
	// preempt a worker (pause p50 13 ms → about 1 ms, BenchmarkPause).
	runtime.GOMAXPROCS(int(c.cpus.Load()) + 1)
	c.send(message{kind: kindHello, h: header{Hello: &Hello{
		Protocol: protocolVersion, PID: os.Getpid(), Priority: prio, KernelPath: compute.KernelPath(),
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(), BlockLog: c.blocks != nil,
	}}})
	in := bufio.NewReaderSize(stdin, 64<<10)
	for {
		b, err := wire.ReadFrame(in, maxParentFrame)
		if err != nil {
			c.shutdown()
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintf(stderr, "hydra compute child: %v\n", err)
			return 1
		}
		m, err := decodeMessage(b)
		if err != nil {
			// The framing is intact, so the stream is still usable: report and go on.
			c.send(message{kind: kindError, h: header{Err: err.Error()}})
			continue
		}
		switch m.kind {
		case kindRun:
			c.configure(m.h.CPUs, m.h.CPULimit)
			c.start(m.h.Task, *m.h.Spec, *m.h.Range, m.h.Spans)
		case kindStop:
			c.stop(m.h.Task)
		case kindConfig:
			c.configure(m.h.CPUs, m.h.CPULimit)
		case kindExit:
			c.shutdown()
			return 0
		default:
			c.send(message{kind: kindError, h: header{Err: fmt.Sprintf("unexpected message kind %q from the parent", m.kind)}})
		}
	}
}

// child is the state of the compute child: at most one task runs at a time.
type child struct {
	wmu    sync.Mutex
	out    *bufio.Writer
	stderr io.Writer
	gate   *gate
	cpus   atomic.Int32
	blocks *shm // the finished-block log shared with the node, or nil

	mu  sync.Mutex
	cur *task
	wg  sync.WaitGroup
}

// task is the running task of the child.
type task struct {
	id      uint64
	spec    compute.JobSpec
	rng     compute.Range
	spans   []compute.Range // π only: the disjoint ranges to compute, which rng covers (header.Spans)
	stopped atomic.Bool

	halt     chan struct{} // closed by stop (wasm tasks wait on it in the duty cycle)
	haltOnce sync.Once
	wasmDone atomic.Uint64 // wasm: finished prefix in items

	mu       sync.Mutex
	seg      *segment
	base     uint64 // units finished by earlier segments
	baseHits uint64
}

func (t *task) stop() {
	t.stopped.Store(true)
	t.haltOnce.Do(func() {
		if t.halt != nil {
			close(t.halt)
		}
	})
	t.cut()
}

// cut halts the running segment; unless the task is stopped, the rest runs as a new segment.
func (t *task) cut() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seg != nil {
		t.seg.stop()
	}
}

func (t *task) setSeg(s *segment, base, hits uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seg, t.base, t.baseHits = s, base, hits
	if s != nil && t.stopped.Load() {
		s.stop()
	}
}

// prefix is the task's finished prefix in segment units (π samples, Mandelbrot pixels).
func (t *task) prefix() uint64 {
	if t.spec.Kind == compute.KindWasm {
		return t.wasmDone.Load()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.base
	if t.seg != nil {
		sd, _ := t.seg.prefix()
		d += sd
	}
	return d
}

// send writes one message; a write error means the parent is gone, which the read loop sees too.
// An error's text is fitted to what the parent accepts (clipErr).
func (c *child) send(m message) {
	if m.kind == kindError {
		m.h.Err = clipErr(m.h.Err)
	}
	b, err := encodeMessage(m)
	if err != nil {
		b, _ = encodeMessage(message{kind: kindError, h: header{Task: m.h.Task, Err: clipErr(err.Error())}})
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if wire.WriteFrame(c.out, b) == nil {
		_ = c.out.Flush()
	}
}

// clipErr fits an error text to the parent's bound (maxErrText, non-empty) as the parent
// decodes it: the parent refuses a message that breaks the bound as a broken stream, kills the
// child and loses the error (a module's fault then counts as the node's, and a job whose module
// fails so is retried on every node for ever). JSON turns each invalid byte into U+FFFD, three
// bytes, so the text is made valid UTF-8 first; then it is cut on a rune boundary, as a cut
// inside a character leaves invalid bytes too.
func clipErr(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if s == "" {
		return "unknown error"
	}
	if len(s) <= maxErrText {
		return s
	}
	cut := maxErrText - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// configure applies --cpus (GOMAXPROCS and the worker count; a running task is cut and goes on
// with the new count) and --cpu-limit (the CPU-time budget, applied at once). 0 keeps a setting.
func (c *child) configure(cpus, limit int) {
	if limit > 0 {
		c.gate.set(limit)
	}
	if cpus > 0 && int32(cpus) != c.cpus.Load() {
		c.cpus.Store(int32(cpus))
		c.gate.setCPUs(cpus)
		runtime.GOMAXPROCS(cpus + 1) // a spare P for the control goroutines (see Main)
		sweepThreads()               // GOMAXPROCS may have started threads; they inherit, but make sure
		c.mu.Lock()
		if c.cur != nil {
			c.cur.cut()
		}
		c.mu.Unlock()
	}
}

func (c *child) start(id uint64, spec compute.JobSpec, r compute.Range, spans []compute.Range) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		c.send(message{kind: kindError, h: header{Task: id, Err: fmt.Sprintf("busy with task %d", c.cur.id)}})
		return
	}
	if spec.Kind == compute.KindMandelbrot {
		r.End = min(r.End, r.Start+uint64(max(1, wire.MaxResultCounts/spec.Mandel.Width)))
	}
	if cu := spec.ChunkUnits; cu > 0 {
		r.End = min(r.End, (r.Start/cu+compute.MaxLeaseChunks)*cu) // at most maxParts parts
	}
	c.cur = &task{id: id, spec: spec, rng: r, spans: spans, halt: make(chan struct{})}
	c.gate.busy()
	c.wg.Add(1)
	go c.run(c.cur)
}

// stop stops the running task if its id matches (0 matches any).
func (c *child) stop(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && (id == 0 || id == c.cur.id) {
		c.cur.stop()
	}
}

// shutdown stops the running task and waits until its result is sent.
func (c *child) shutdown() {
	c.stop(0)
	c.wg.Wait()
}

func (c *child) run(t *task) {
	defer c.wg.Done()
	cpu0, cpuOK := processCPU()
	wall0 := time.Now()
	c.blocks.begin(t.id, cpu0)
	unitPixels := uint64(1)
	if t.spec.Kind == compute.KindMandelbrot {
		unitPixels = uint64(t.spec.Mandel.Width)
	}
	quit, ticked := make(chan struct{}), make(chan struct{})
	stuck := newStuckCheck(t.spec.Kind == compute.KindWasm, int(c.cpus.Load()))
	go func() {
		defer close(ticked)
		tk := time.NewTicker(progressEvery)
		defer tk.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tk.C:
				done := t.prefix()
				if stuck.check(done) {
					c.send(message{kind: kindError, h: header{Task: t.id, Fault: true, Err: fmt.Sprintf(
						"%v: no item finished in %v of CPU time (an endless loop?); compute child restarted", wasm.ErrTimeout, wasmCallTimeout())}})
					os.Exit(3) // the call cannot be cut: the process goes, the node starts another
				}
				c.send(message{kind: kindProgress, h: header{Task: t.id, Done: done / unitPixels}})
				sweepThreads()
			}
		}
	}()
	var (
		done    uint64
		payload []byte
		parts   []partHead
		roots   []audit.Hash
		err     error
	)
	switch t.spec.Kind {
	case compute.KindPi:
		if len(t.spans) > 0 {
			done, payload, parts, roots, err = c.runPiSpans(t)
			break
		}
		var pieces *piPieces
		done, pieces, err = c.runPi(t, t.rng)
		payload, parts, roots = pieces.payload(t.rng.Start, t.rng.Start+done, t.spec.ChunkUnits)
	case compute.KindMandelbrot:
		done, payload, parts, roots, err = c.runMandel(t)
	case compute.KindWasm:
		done, payload, err = c.runWasm(t)
	default:
		err = fmt.Errorf("unknown kind %q", t.spec.Kind)
	}
	c.gate.idle()      // the kernels are done: the wait for the next task earns no budget
	c.blocks.end(t.id) // and the result goes by message: a freeze from now on waits for it
	close(quit)
	<-ticked
	secs := time.Since(wall0).Seconds() * float64(c.cpus.Load())
	if cpu1, ok := processCPU(); ok && cpuOK {
		secs = max(cpu1-cpu0, 0)
	}
	c.mu.Lock()
	c.cur = nil // before the result: the parent may send the next run as soon as it has it
	c.mu.Unlock()
	if err != nil {
		var mf *ModuleFault
		c.send(message{kind: kindError, h: header{Task: t.id, Err: err.Error(), Fault: errors.As(err, &mf)}})
		return
	}
	c.send(message{kind: kindResult, payload: payload, h: header{
		Task: t.id, Range: &compute.Range{Start: t.rng.Start, End: t.rng.Start + done}, ComputeSeconds: secs, Parts: parts,
		Roots: roots,
	}})
}

// drive runs n units of t as segments until they are all done, the task is stopped, or a
// kernel fails; fn(off) gives the block function of a segment starting at unit off.
func (c *child) drive(t *task, n, bs uint64, fn func(off uint64) blockFn) (done, hits uint64, err error) {
	for done < n && !t.stopped.Load() {
		seg := newSegment(n-done, bs, c.gate)
		t.setSeg(seg, done, hits)
		err = seg.run(int(c.cpus.Load()), fn(done))
		d, h := seg.prefix()
		done, hits = done+d, hits+h
		t.setSeg(nil, done, hits)
		if err != nil {
			break
		}
	}
	return done, hits, err
}

// runPi computes π samples and returns the finished prefix with its pieces: kernel blocks cut
// at the commitment blocks' boundaries (audit.PiBlocks) and, for a job with chunk_units, at its
// chunks' boundaries, each with its hits.
// runPiSpans computes a task's spans one after the other (header.Spans) until one is not
// finished (a stop): done is the units from the task's start to the end of the last span
// finished, the payload each finished span's result after the other, a part and a root each.
func (c *child) runPiSpans(t *task) (done uint64, payload []byte, parts []partHead, roots []audit.Hash, err error) {
	rootsOK := true
	for _, sp := range t.spans {
		d, pieces, err := c.runPi(t, sp)
		if err != nil {
			return 0, nil, nil, nil, err
		}
		if d < sp.Len() {
			break // stopped: the spans before it are the result
		}
		pl, _, rs := pieces.payload(sp.Start, sp.End, 0)
		payload = append(payload, pl...)
		parts = append(parts, partHead{Range: sp, Bytes: len(pl)})
		if len(rs) == 1 {
			roots = append(roots, rs[0])
		} else {
			rootsOK = false
		}
		done = sp.End - t.rng.Start
	}
	if len(parts) == 0 {
		return 0, compute.EncodePiBlocksPayload(nil), nil, nil, nil
	}
	return done, payload, parts, rootsIf(rootsOK, roots), nil
}

// runPi computes the range r of π task t (its whole range, or one of its spans).
func (c *child) runPi(t *task, r compute.Range) (done uint64, pieces *piPieces, err error) {
	seed, start, cu := t.spec.Pi.Seed, r.Start, t.spec.ChunkUnits
	pieces = &piPieces{at: map[uint64]piPiece{}}
	done, _, err = c.drive(t, r.Len(), piBlock, func(off uint64) blockFn {
		return func(s, e uint64, _ compute.Stop) (uint64, uint64, error) {
			// Not cut inside: a block is a few ms, and finishing it keeps every sample computed.
			var total uint64
			for a, b := start+off+s, start+off+e; a < b; {
				cut := min((a/audit.PiBlock+1)*audit.PiBlock, b)
				if cu > 0 {
					cut = min(cut, (a/cu+1)*cu)
				}
				h := compute.PiHits(seed, a, cut)
				pieces.mu.Lock()
				pieces.at[a] = piPiece{cut, h}
				pieces.mu.Unlock()
				c.blocks.record(t.id, a, cut, h)
				total += h
				a = cut
			}
			return e - s, total, nil
		}
	})
	if err != nil || done == 0 {
		return done, nil, err
	}
	return done, pieces, nil
}

// piPieces are the computed pieces of a π task, by absolute start.
type piPieces struct {
	mu sync.Mutex
	at map[uint64]piPiece
}

type piPiece struct{ end, hits uint64 }

// payload encodes the result of [start, end) (the finished prefix): the hits of each of its
// commitment blocks, counting only the pieces inside it, and its commitment (roots). With chunk
// units cu > 0 it is cut at the chunks, a payload, a part and a root each, the payloads one
// after the other.
func (p *piPieces) payload(start, end, cu uint64) ([]byte, []partHead, []audit.Hash) {
	if p == nil || end <= start {
		return compute.EncodePiBlocksPayload(nil), nil, nil
	}
	type run struct{ start, end, hits uint64 }
	runs := make([]run, 0, len(p.at))
	for s, pc := range p.at {
		if s >= start && pc.end <= end {
			runs = append(runs, run{s, pc.end, pc.hits})
		}
	}
	slices.SortFunc(runs, func(x, y run) int { return cmp.Compare(x.start, y.start) })
	var roots []audit.Hash
	rootsOK := true
	// one encodes [a, b) from the runs that start at or after runs[k], returning the next k,
	// and adds its root.
	one := func(a, b uint64, k int) ([]byte, int) {
		hits := make([]uint64, audit.PiLeafCount(a, b))
		for ; k < len(runs) && runs[k].end <= b; k++ {
			hits[runs[k].start/audit.PiBlock-a/audit.PiBlock] += runs[k].hits
		}
		if root, err := compute.PiRoot(compute.Range{Start: a, End: b}, hits); err != nil {
			rootsOK = false // the node commits to the payloads itself (and reports the error)
		} else if rootsOK {
			roots = append(roots, root)
		}
		return compute.EncodePiBlocksPayload(hits), k
	}
	if cu == 0 {
		pl, _ := one(start, end, 0)
		return pl, nil, rootsIf(rootsOK, roots)
	}
	var out []byte
	var parts []partHead
	k := 0
	for a := start; a < end; {
		b := min((a/cu+1)*cu, end)
		var pl []byte
		pl, k = one(a, b, k)
		out = append(out, pl...)
		parts = append(parts, partHead{Range: compute.Range{Start: a, End: b}, Bytes: len(pl)})
		a = b
	}
	return out, parts, rootsIf(rootsOK, roots)
}

// rootsIf is roots if every part got one, else none: the node then commits to the payloads
// itself.
func rootsIf(ok bool, roots []audit.Hash) []audit.Hash {
	if !ok {
		return nil
	}
	return roots
}

// mandelRoots appends the root of the Mandelbrot rows from first on (counts, w wide) to roots;
// nil if it has none (compute.MandelRoot refuses the rows): the node then commits to the
// payloads itself.
func mandelRoots(first uint64, w int, counts []uint32, roots []audit.Hash) []audit.Hash {
	root, err := compute.MandelRoot(first, w, counts)
	if err != nil {
		return nil
	}
	return append(roots, root)
}

// runMandel computes whole rows; a stop keeps the finished pixels' whole rows.
func (c *child) runMandel(t *task) (rows uint64, payload []byte, parts []partHead, roots []audit.Hash, err error) {
	p := *t.spec.Mandel
	w := uint64(p.Width)
	n := t.rng.Len() * w
	first := t.rng.Start * w
	// The counts go straight into the log's buffer where there is one: a pause that freezes
	// the child reads the finished rows there.
	out, lg := c.blocks.pixels(n), c.blocks
	if out == nil {
		out, lg = make([]uint32, n), nil // counts the node cannot read: log nothing
	} else {
		defer c.blocks.release(t.id, n)
	}
	bs := mandelBlock(n, w, uint64(c.cpus.Load()))
	done, _, err := c.drive(t, n, bs, func(off uint64) blockFn {
		return func(s, e uint64, stop compute.Stop) (uint64, uint64, error) {
			a := first + off + s
			d, err := compute.MandelPixels(p, int(a), int(first+off+e), out[off+s:off+e], 1, stop)
			if d > 0 {
				lg.record(t.id, a, a+uint64(d), 0)
			}
			return uint64(d), 0, err
		}
	})
	if err != nil {
		return 0, nil, nil, nil, err
	}
	rows = done / w
	cu := t.spec.ChunkUnits
	if cu == 0 || rows == 0 {
		counts := out[:rows*w]
		return rows, compute.EncodeMandelPayload(counts), nil, mandelRoots(t.rng.Start, int(w), counts, nil), nil
	}
	// Cut at the job's chunks: a payload, a part and a root each, the payloads one after the
	// other.
	rootsOK := true
	for a, end := t.rng.Start, t.rng.Start+rows; a < end; {
		b := min((a/cu+1)*cu, end)
		counts := out[(a-t.rng.Start)*w : (b-t.rng.Start)*w]
		pl := compute.EncodeMandelPayload(counts)
		payload = append(payload, pl...)
		parts = append(parts, partHead{Range: compute.Range{Start: a, End: b}, Bytes: len(pl)})
		if rootsOK {
			roots = mandelRoots(a, int(w), counts, roots)
			rootsOK = roots != nil
		}
		a = b
	}
	return rows, payload, parts, roots, nil
}
