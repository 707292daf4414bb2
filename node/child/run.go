package child

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/wire"
)

// Run computes t in the child and returns its result. onProgress (may be nil) is called on
// Run's goroutine with the finished prefix in units (π samples, Mandelbrot rows) about every
// 250 ms.
//
// ctx cancellation, StopTask or Pause stop the task: Run then returns the finished prefix with
// a nil error (a stop loses nothing; compare Result.Done with t.Range or check ctx.Err()).
// Done may also be shorter than t.Range without a stop for a Mandelbrot range of more than
// wire.MaxResultCounts pixels (so that its result fits a log entry): run the rest as another task. While paused, Run waits for Resume or ctx.
// If the child crashes or is killed, Run returns an error and the next Run starts a new child.
func (r *Runner) Run(ctx context.Context, t Chunk, onProgress func(done uint64)) (Result, error) {
	if !r.runMu.TryLock() {
		return Result{}, ErrBusy
	}
	defer r.runMu.Unlock()
	r.disarmIdle()
	defer r.armIdle()
	if err := checkTask(t.Spec, t.Range); err != nil {
		return Result{}, fmt.Errorf("task %d: %w", t.ID, err)
	}
	if err := checkSpans(t.Spec, t.Range, t.Spans); err != nil {
		return Result{}, fmt.Errorf("task %d: %w", t.ID, err)
	}
	var (
		p      *proc
		stopCh = make(chan struct{})
		cpus   int
		limit  int
	)
	for {
		if err := r.waitResumed(ctx); err != nil {
			return Result{}, err
		}
		var err error
		if p, err = r.child(ctx); err != nil {
			return Result{}, err
		}
		r.mu.Lock()
		if !r.paused { // else paused while the child started: wait again
			r.stopTask = stopCh
			cpus, limit = effective(r.cpus, r.limit)
			r.mu.Unlock()
			break
		}
		r.mu.Unlock()
	}
	r.seq++
	wire := r.seq
	defer func() {
		r.mu.Lock()
		if r.stopTask == stopCh {
			r.stopTask = nil
		}
		r.mu.Unlock()
	}()
	spec, rng := t.Spec, t.Range
	if err := p.send(message{kind: kindRun, h: header{Task: wire, Spec: &spec, Range: &rng, CPUs: cpus, CPULimit: limit, Spans: t.Spans}}); err != nil {
		p.kill()
		return Result{}, fmt.Errorf("task %d: send to compute child: %w", t.ID, err)
	}
	done := ctx.Done()
	// A WebAssembly task's child must keep talking (progress every 250 ms): one that falls
	// silent is stuck in a module call and is killed (see wasmSilence).
	var silent <-chan time.Time
	var silence *time.Timer
	if t.Spec.Kind == compute.KindWasm {
		silence = time.NewTimer(wasmSilence)
		defer silence.Stop()
		silent = silence.C
	}
	var stopTimer *time.Timer
	var stopDeadline <-chan time.Time
	defer func() {
		if stopTimer != nil {
			stopTimer.Stop()
		}
	}()
	sendStop := func() {
		done, stopCh = nil, nil
		if stopTimer == nil {
			stopTimer = time.NewTimer(stopTimeout)
			stopDeadline = stopTimer.C
			// On a goroutine of its own: a child that reads its stdin no more with the pipe full
			// would hold the write for ever, and this loop with it, so the deadline's kill (which
			// ends the write) would never come. A stop the child reads late names this task and
			// stops no other.
			go func() { _ = p.send(message{kind: kindStop, h: header{Task: wire}}) }()
		}
	}
	// handle returns done=true with Run's outcome when m ends the task.
	handle := func(m message) (res Result, done bool, err error) {
		if m.h.Task != wire && m.h.Task != 0 {
			return Result{}, false, nil // a straggler of an earlier task
		}
		switch m.kind {
		case kindProgress:
			if onProgress != nil {
				onProgress(m.h.Done)
			}
		case kindResult:
			res, err = r.result(p, t, m)
			return res, true, err
		case kindError:
			if m.h.Task == 0 {
				r.log.Warn("compute child reports an error", "err", m.h.Err)
				return Result{}, false, nil
			}
			if t.Spec.Kind == compute.KindWasm && strings.Contains(m.h.Err, wasm.ErrTimeout.Error()) {
				// The child found a module stuck in a call and exits (it cannot cut the call):
				// let it go before the next Run asks for a child.
				select {
				case <-p.dead:
				case <-time.After(exitTimeout):
					p.kill()
				}
			}
			if m.h.Fault && t.Spec.Kind == compute.KindWasm {
				return Result{}, true, fmt.Errorf("task %d: %w", t.ID, moduleFault(m.h.Err))
			}
			return Result{}, true, fmt.Errorf("task %d: compute child: %s", t.ID, m.h.Err)
		}
		return Result{}, false, nil
	}
	for {
		select {
		case m := <-p.msgs:
			if res, ok, err := handle(m); ok {
				return res, err
			}
			if silence != nil {
				silence.Reset(wasmSilence)
			}
		case <-silent:
			p.kill()
			select { // gone before the next Run asks for a child
			case <-p.dead:
			case <-time.After(exitTimeout):
			}
			return Result{}, fmt.Errorf("task %d: %w", t.ID, moduleFault(fmt.Sprintf(
				"%v: compute child silent for %v (a module call that never returns); killed", wasm.ErrTimeout, wasmSilence)))
		case <-p.dead:
			// Everything the child wrote is in msgs by now (dead closes after the reader ends):
			// a child that sent its result and exited (Close) still delivers it.
			for {
				select {
				case m := <-p.msgs:
					if res, ok, err := handle(m); ok {
						return res, err
					}
					continue
				default:
				}
				break
			}
			return Result{}, fmt.Errorf("task %d: %w", t.ID, p.exitError())
		case <-done:
			sendStop()
		case <-stopCh:
			if r.Paused() {
				if res, ok := r.freezeStop(p, t, wire); ok {
					return res, nil
				}
			}
			sendStop()
		case <-stopDeadline:
			// Not the module's fault, even in a WebAssembly task: its calls in flight finish
			// before it stops, and one may take up to the call deadline (docs/wasm.md), longer
			// in wall time for a child starved at idle priority by the owner who made it pause.
			// A call stuck for good is the module's fault where it is seen on CPU time (the
			// child's stuckCheck) or by the silence of a child it froze (wasmSilence).
			p.kill()
			return Result{}, fmt.Errorf("task %d: compute child did not stop within %v; killed", t.ID, stopTimeout)
		}
	}
}

// freezeLogged, when set (by tests and benchmarks), sees the blocks a freeze found logged:
// what the child had finished, against which what the result keeps is counted.
var freezeLogged func(t Chunk, recs []shmRec)

// freezeStop stops a task at once for a pause (docs/design.md §7, "Pausing at once"): it
// freezes the child with SIGSTOP, reads every block it finished from the shared log, and kills
// it (the next Run starts another). At idle priority under an owner busy on every core the child
// would otherwise take a second or more to read a stop message, computing meanwhile. ok is
// false when the child cannot be frozen (no shared log, a WebAssembly task, not Linux): the
// caller then stops it by message.
func (r *Runner) freezeStop(p *proc, t Chunk, wireID uint64) (Result, bool) {
	if !p.hello.BlockLog || (t.Spec.Kind != compute.KindPi && t.Spec.Kind != compute.KindMandelbrot) || len(t.Spans) > 0 {
		return Result{}, false // a task of spans (audits) stops by message: its finished spans
	}
	p.blockMu.Lock()
	defer p.blockMu.Unlock()
	if p.blocks == nil { // the child is gone
		return Result{}, false
	}
	cpu, err := p.freeze()
	if err != nil {
		r.log.Warn("compute child: freeze for a pause failed; stopping it by message", "err", err)
		p.thaw()
		return Result{}, false
	}
	// A task whose kernels are done has its result on the way by message, and its counts may
	// be released already (read as zeros): thaw the child and take that message.
	if p.blocks.ended(wireID) {
		p.thaw()
		return Result{}, false
	}
	res := Result{ID: t.ID, Done: compute.Range{Start: t.Range.Start, End: t.Range.Start}}
	if recs, cpu0, ok := p.blocks.collect(wireID); ok {
		var pix []uint32
		if t.Spec.Kind == compute.KindMandelbrot {
			pix = p.blocks.pixels(wire.MaxResultCounts)
		}
		if freezeLogged != nil {
			freezeLogged(t, recs)
		}
		parts := logParts(t, recs, pix)
		if len(parts) > 0 && parts[0].Done.Start == t.Range.Start {
			res.Done, res.Payload, res.Root = parts[0].Done, parts[0].Payload, parts[0].Root
			parts = parts[1:]
		}
		res.Also = parts
		// cpu0 is the child's word, as untrusted as its messages: a NaN or a wild value would
		// keep the worker's results out of every exchange (maxComputeSeconds).
		if secs := cpu - cpu0; secs >= 0 && secs <= maxComputeSeconds {
			res.ComputeSeconds = secs
		} else if !(secs >= -1) || secs > maxComputeSeconds { // not /proc's ticks against getrusage: NaN too
			r.log.Warn("compute child: its log's CPU time at the task's start makes no sense; the pause's result counts none",
				"cpu0", cpu0, "cpu", cpu)
		}
	}
	if p.blocks.ended(wireID) { // the child was not yet stopped when the counts were read
		p.thaw()
		return Result{}, false
	}
	p.blocks.drop()
	r.mu.Lock()
	if r.p == p {
		r.p = nil // the next Run starts a new child
	}
	r.mu.Unlock()
	p.kill()
	return res, true
}

// result checks a result against its task: a prefix of the range with a payload that fits.
// partsFit reports whether a result's parts are what task t may return (decodeMessage checked
// that they lie in order within the result's range): a prefix of its spans, or, for a task
// without spans, consecutive ranges.
func partsFit(t Chunk, parts []partHead) error {
	if len(t.Spans) > 0 {
		if len(parts) == 0 && t.Spans[0].Len() > 0 {
			return nil // stopped before its first span was finished: an empty prefix
		}
		if len(parts) > len(t.Spans) {
			return fmt.Errorf("%d parts for %d spans", len(parts), len(t.Spans))
		}
		for i, ph := range parts {
			if ph.Range != t.Spans[i] {
				return fmt.Errorf("part %s for span %s", ph.Range, t.Spans[i])
			}
		}
		return nil
	}
	for i := 1; i < len(parts); i++ {
		if parts[i].Range.Start != parts[i-1].Range.End {
			return fmt.Errorf("part %s does not follow on at %d", parts[i].Range, parts[i-1].Range.End)
		}
	}
	return nil
}

func (r *Runner) result(p *proc, t Chunk, m message) (Result, error) {
	d := *m.h.Range
	if d.Start != t.Range.Start || d.End > t.Range.End {
		p.kill()
		return Result{}, fmt.Errorf("task %d: compute child returned range %s for %s", t.ID, d, t.Range)
	}
	if len(m.h.Parts) > 0 && t.Spec.ChunkUnits == 0 && len(t.Spans) == 0 {
		p.kill()
		return Result{}, fmt.Errorf("task %d: compute child cut a result of a job without chunk_units", t.ID)
	}
	if err := partsFit(t, m.h.Parts); err != nil {
		p.kill()
		return Result{}, fmt.Errorf("task %d: compute child: %w", t.ID, err)
	}
	parts := []Part{{Done: d, Payload: m.payload}}
	if len(m.h.Parts) > 0 { // decodeMessage checked that they cut d and its payload
		parts = make([]Part, len(m.h.Parts))
		off := 0
		for i, ph := range m.h.Parts {
			parts[i] = Part{Done: ph.Range, Payload: m.payload[off : off+ph.Bytes : off+ph.Bytes]}
			off += ph.Bytes
		}
	}
	if len(m.h.Roots) == len(parts) { // decodeMessage checked: none, or one per part
		for i := range parts {
			parts[i].Root = m.h.Roots[i]
		}
	}
	for _, pt := range parts {
		if err := checkPayload(t.Spec, pt); err != nil {
			p.kill()
			return Result{}, fmt.Errorf("task %d: compute child: %w", t.ID, err)
		}
	}
	return Result{ID: t.ID, Done: parts[0].Done, Payload: parts[0].Payload, Root: parts[0].Root, ComputeSeconds: m.h.ComputeSeconds, Also: parts[1:]}, nil
}

// checkPayload checks that a part's payload decodes as the result of its range.
func checkPayload(spec compute.JobSpec, pt Part) error {
	switch {
	case spec.Kind == compute.KindPi:
		if _, _, err := compute.DecodePiBlocks(pt.Payload, pt.Done); err != nil {
			return err
		}
	case spec.Kind == compute.KindWasm:
		if _, _, err := compute.DecodeWasmPayload(pt.Payload, spec.Wasm.Reduce); err != nil {
			return err
		}
	case len(pt.Payload) == 0:
		return fmt.Errorf("no payload for %s", pt.Done)
	}
	return nil
}

func (r *Runner) waitResumed(ctx context.Context) error {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return ErrClosed
		}
		if !r.paused {
			r.mu.Unlock()
			return nil
		}
		ch := r.resumed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
