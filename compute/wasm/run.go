package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// BlockTarget is the time one hydra_map call aims at. Blocks are sized from the module's
// measured speed: long enough that a call's fixed cost (well under a microsecond) vanishes, short
// enough that a pause loses at most one block per worker and the tail of a chunk balances.
const BlockTarget = 10 * time.Millisecond

// maxBlock bounds the items of one call, whatever the measured speed.
const maxBlock = 1 << 40

// Run is one run of a module over items [Start, End) of a job.
type Run struct {
	Params     []byte
	Reduce     compute.Reduce
	Start, End uint64
	// BlockItems, when set, is the job's commitment block size (compute.WasmBlockItems): no
	// call crosses a multiple of it, and the result carries each block's value (Result.Blocks).
	BlockItems uint64
	// Workers is the number of instances calling hydra_map at once (at least 1).
	Workers int
	// Poll is checked before each call; true stops the run after the calls in flight (it may
	// block, as the compute child's duty cycle does). Cancelling the context instead stops at
	// once, dropping the calls in flight. Either way the finished prefix is kept.
	Poll compute.Stop
	// OnWorker, if set, runs first in each worker goroutine (the compute child locks the thread
	// and lowers its priority there); the function it returns, if any, runs when the worker ends.
	OnWorker func() (done func())
	// OnProgress, if set, is called with the finished prefix's item count as it grows: one call
	// at a time, each with a larger count than the one before.
	OnProgress func(done uint64)
}

// Result is the finished prefix of a run: items [Start, Start+Done), their reduced value and,
// for concat, their output bytes in item order (at most Config.MaxOutput of them: a run whose
// output would grow past it ends before the call that emitted too much, Done short of End
// without an error, and the rest is another run's).
type Result struct {
	Done  uint64
	Value uint64
	Out   []byte
	// Blocks are the results of the prefix's commitment blocks (its intersections with the
	// multiples of Run.BlockItems, in order; outputs slice Out), when BlockItems is set.
	Blocks []compute.WasmBlock
}

// block is a finished call.
type block struct {
	end uint64
	val uint64
	out []byte
	gen uint64 // runState.gen when it was claimed
}

// runState tracks the finished prefix: blocks below front are folded, blocks finished out of
// order wait in ahead (at most one per worker).
type runState struct {
	r      Run
	m      *Module
	cancel context.CancelFunc

	mu       sync.Mutex
	next     uint64 // first item not handed out
	limit    uint64 // first item not part of the run: End, or where the output filled up (cut)
	gen      uint64 // calls claimed in an earlier generation are dropped (full)
	serial   bool   // one call at a time, each with exactly the output room the prefix leaves
	maxItems uint64 // most items one call may take (0: no bound)
	front    uint64 // items [Start, front) are folded
	value    uint64
	out      []byte
	ahead    map[uint64]block
	outSize  int                 // bytes in out and ahead
	blocks   []compute.WasmBlock // of the folded prefix, by commitment block (outputs: lengths in blockOut)
	blockOut []int
	err      error

	// progMu orders the OnProgress calls, made outside mu: two workers that each moved the
	// front would otherwise report in either order, and a smaller count could come last.
	progMu   sync.Mutex
	reported uint64 // the front last reported

	nsPerItem atomic.Uint64 // measured cost, float bits ×1000 (0: unknown)
}

// Run computes r on up to r.Workers instances and returns the finished prefix. A failing call
// (trap, timeout, exit) stops the run and is returned with the prefix finished before it.
func (m *Module) Run(ctx context.Context, r Run) (Result, error) {
	if err := r.Reduce.Validate(); err != nil {
		return Result{}, err
	}
	if r.Reduce == compute.ReduceConcat && !m.emits {
		return Result{}, errors.New("reduce concat needs a module that imports hydra.emit")
	}
	if r.End < r.Start {
		return Result{}, fmt.Errorf("range [%d,%d) reversed", r.Start, r.End)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &runState{r: r, m: m, cancel: cancel, next: r.Start, limit: r.End, front: r.Start, reported: r.Start, value: r.Reduce.Identity(), ahead: map[uint64]block{}}
	workers := max(r.Workers, 1)
	if n := r.End - r.Start; n < uint64(workers) {
		workers = int(max(n, 1))
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { s.worker(ctx) })
	}
	wg.Wait()
	res := Result{Done: s.front - r.Start, Value: s.value, Out: s.out, Blocks: s.blocks}
	for i, at := 0, 0; i < len(res.Blocks); i++ {
		res.Blocks[i].Out = res.Out[at : at+s.blockOut[i] : at+s.blockOut[i]]
		at += s.blockOut[i]
	}
	return res, s.err
}

func (s *runState) worker(ctx context.Context) {
	if s.r.OnWorker != nil {
		if done := s.r.OnWorker(); done != nil {
			defer done()
		}
	}
	var in *instance
	defer func() {
		if in != nil {
			s.m.put(in, s.r.Params, true)
		}
	}()
	for {
		if s.r.Poll != nil && s.r.Poll() {
			return
		}
		if ctx.Err() != nil {
			return
		}
		lo, hi, maxOut, gen, ok := s.claim()
		if !ok {
			return
		}
		if in == nil {
			var err error
			if in, err = s.m.get(ctx, s.r.Params); err != nil {
				s.fail(lo, hi, ctx, err)
				return
			}
		}
		st := &callState{max: maxOut, limit: s.m.e.cfg.MaxOutput}
		t0 := time.Now()
		v, err := s.m.call(ctx, in, lo, hi, st)
		if err != nil {
			s.m.put(in, s.r.Params, false)
			in = nil
			if errors.Is(st.err, errOutputFull) {
				if err = s.full(lo, hi, gen); err == nil {
					continue
				}
			}
			s.fail(lo, hi, ctx, err)
			return
		}
		s.measure(hi-lo, time.Since(t0))
		s.finish(lo, block{end: hi, val: v, out: st.out, gen: gen})
	}
}

// claim hands out the next block, sized to BlockTarget from the measured cost, at most an even
// share of what is left, so workers finish together, with the output room left (that of the
// blocks still running is not known yet: a block that fills it up ends the prefix, full).
func (s *runState) claim() (lo, hi uint64, maxOut int, gen uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next >= s.limit || s.err != nil || s.serial && s.next != s.front {
		return 0, 0, 0, 0, false
	}
	left := s.limit - s.next
	n := uint64(1) // a probe until a cost is known
	if c := s.nsPerItem.Load(); c > 0 {
		n = uint64(float64(BlockTarget.Nanoseconds()) * 1000 / float64(c))
		share := (left + uint64(max(s.r.Workers, 1)) - 1) / uint64(max(s.r.Workers, 1))
		n = max(min(n, share, maxBlock), 1)
	}
	n = min(n, left)
	if s.maxItems > 0 {
		n = min(n, s.maxItems)
	}
	if b := s.r.BlockItems; b > 0 {
		n = min(n, (s.next/b+1)*b-s.next) // within one commitment block
	}
	lo, hi = s.next, s.next+n
	s.next = hi
	return lo, hi, max(s.m.e.cfg.MaxOutput-s.outSize, 0), s.gen, true
}

// full handles a call [lo, hi) whose output did not fit the room it was given. After a
// finished prefix, the prefix ends before the call (the rest of the range is another run's: a
// node leases it again). A call at the run's start goes again in halves, one call at a time
// with all of the room, down to one item; one item that alone emits more than
// Config.MaxOutput fails the run. The outcome is the same whatever the timing: the longest
// prefix of items that fits, or that failure.
func (s *runState) full(lo, hi, gen uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen || lo >= s.limit {
		return nil // dropped already
	}
	if lo > s.front || s.front > s.r.Start {
		s.cut(lo)
		return nil
	}
	if hi-lo == 1 && s.serial {
		return fmt.Errorf("hydra_map(%d, %d): hydra.emit: item %d alone emits more than %d bytes, the most one chunk may",
			lo, hi, lo, s.m.e.cfg.MaxOutput)
	}
	s.gen++
	s.serial = true
	s.maxItems = max((hi-lo)/2, 1)
	s.next, s.limit = lo, s.r.End
	clear(s.ahead)
	s.outSize = 0
	return nil
}

// cut ends the run at item at: no call is handed out from there, and the calls finished past
// it are dropped. s.mu is held.
func (s *runState) cut(at uint64) {
	s.limit = min(s.limit, at)
	for lo, b := range s.ahead {
		if lo >= s.limit {
			delete(s.ahead, lo)
			s.outSize -= len(b.out)
		}
	}
}

// measure folds a call's cost into the estimate (a moving average that follows the latest calls,
// as a module's cost per item may grow along the range).
func (s *runState) measure(items uint64, d time.Duration) {
	c := uint64(max(float64(d.Nanoseconds())*1000/float64(items), 1))
	for {
		old := s.nsPerItem.Load()
		nw := c
		if old != 0 {
			nw = (old + c) / 2
		}
		if s.nsPerItem.CompareAndSwap(old, nw) {
			return
		}
	}
}

func (s *runState) finish(lo uint64, b block) {
	s.mu.Lock()
	if b.gen != s.gen || lo >= s.limit {
		s.mu.Unlock()
		return // dropped: past the end of a prefix that filled the output, or of a restart
	}
	s.ahead[lo] = b
	s.outSize += len(b.out)
	moved := false
	for {
		b, ok := s.ahead[s.front]
		if !ok {
			break
		}
		if len(s.out)+len(b.out) > s.m.e.cfg.MaxOutput {
			// Calls running at once each had the room left when they began: this one's
			// output does not fit after those folded before it (never the first block's:
			// a call emits at most the room it was given).
			s.cut(s.front)
			break
		}
		delete(s.ahead, s.front)
		if bi := s.r.BlockItems; bi > 0 {
			if len(s.blocks) == 0 || s.front%bi == 0 {
				s.blocks = append(s.blocks, compute.WasmBlock{Value: s.r.Reduce.Identity()})
				s.blockOut = append(s.blockOut, 0)
			}
			last := len(s.blocks) - 1
			s.blocks[last].Value = s.r.Reduce.Combine(s.blocks[last].Value, b.val)
			s.blockOut[last] += len(b.out)
		}
		s.value = s.r.Reduce.Combine(s.value, b.val)
		s.out = append(s.out, b.out...)
		s.front = b.end
		moved = true
	}
	front := s.front
	s.mu.Unlock()
	if moved && s.r.OnProgress != nil {
		s.progMu.Lock()
		if front > s.reported {
			s.reported = front
			s.r.OnProgress(front - s.r.Start)
		}
		s.progMu.Unlock()
	}
}

// fail records the first real failure and stops the other workers; a call cut by the caller's
// cancellation is no failure (its block is simply not part of the prefix).
func (s *runState) fail(lo, hi uint64, ctx context.Context, err error) {
	if errors.Is(err, errCanceled) || ctx.Err() != nil && !errors.Is(err, ErrTimeout) {
		return
	}
	s.mu.Lock()
	if lo >= s.limit {
		s.mu.Unlock()
		return // past the end of a prefix that filled the output: the next run meets it
	}
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cancel()
}
