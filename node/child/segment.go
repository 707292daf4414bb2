package child

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/hydra-compute/hydra/compute"
)

// blockFn computes units [s, e) of a segment, polling stop, and returns how many units of the
// block's prefix are finished and (π) their hits.
type blockFn func(s, e uint64, stop compute.Stop) (done, hits uint64, err error)

// segment runs kernel workers over units [0, n) of a task (relative to where the segment
// starts). Workers take blocks in order; the segment tracks the finished prefix exactly — the
// blocks below a frontier are complete, blocks finished out of order wait in ahead (at most one
// per worker) — so progress reports are exact at any time and a stop keeps everything below the
// first unfinished unit. A task is one segment unless a --cpus change cuts it: the rest then
// runs as a new segment with the new worker count.
//
// The child drives compute's single-goroutine kernels itself rather than PiHitsParallel and
// MandelPixels's own workers, for three reasons: progress is known while a chunk runs (not only
// at its end), a worker count change applies without waiting for the chunk, and every worker
// runs on a thread it has locked and lowered itself (see lowerThisThread).
type segment struct {
	n, bs, nblocks uint64
	gate           *gate

	next     atomic.Uint64
	halted   atomic.Bool
	halt     chan struct{}
	haltOnce sync.Once

	mu    sync.Mutex
	front uint64              // blocks [0, front) are complete
	hits  uint64              // hits of blocks [0, front)
	ahead map[uint64]blockRes // blocks ≥ front finished (or cut short) out of order
	err   error
}

type blockRes struct {
	done, hits uint64
	full       bool
}

func newSegment(n, bs uint64, g *gate) *segment {
	bs = max(bs, 1)
	return &segment{n: n, bs: bs, nblocks: (n + bs - 1) / bs, gate: g, halt: make(chan struct{}), ahead: map[uint64]blockRes{}}
}

// poll is the compute.Stop the kernels get: true once the segment is halted; in the off phase
// of the --cpu-limit duty cycle it blocks the calling worker first.
func (s *segment) poll() bool {
	if s.halted.Load() {
		return true
	}
	s.gate.wait(s.halt)
	return s.halted.Load()
}

// stop halts the segment: workers finish (π) or cut (Mandelbrot) the block in hand and return.
func (s *segment) stop() {
	s.haltOnce.Do(func() {
		s.halted.Store(true)
		close(s.halt)
	})
}

// run computes the segment on up to workers goroutines and returns when they are all done.
func (s *segment) run(workers int, fn blockFn) error {
	workers = int(min(uint64(max(workers, 1)), s.nblocks))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			// The kernel runs on a thread of its own, lowered by itself: the process-wide sweep
			// already covers it (threads inherit their creator's policy), this makes it certain.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			lowerThisThread()
			s.work(fn)
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *segment) work(fn blockFn) {
	for {
		if s.poll() {
			return
		}
		b := s.next.Add(1) - 1
		if b >= s.nblocks {
			return
		}
		st := b * s.bs
		e := min(st+s.bs, s.n)
		done, hits, err := fn(st, e, s.poll)
		full := err == nil && done == e-st
		s.finish(b, blockRes{done: min(done, e-st), hits: hits, full: full}, err)
		if !full {
			return
		}
	}
}

func (s *segment) finish(b uint64, r blockRes, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		s.stop()
	}
	s.ahead[b] = r
	for {
		x, ok := s.ahead[s.front]
		if !ok || !x.full {
			return
		}
		s.hits += x.hits
		delete(s.ahead, s.front)
		s.front++
	}
}

// prefix returns the finished prefix of the segment: units [0, done) and their hits.
func (s *segment) prefix() (done, hits uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	done, hits = min(s.front*s.bs, s.n), s.hits
	if x, ok := s.ahead[s.front]; ok {
		done, hits = min(done+x.done, s.n), hits+x.hits
	}
	return done, hits
}
