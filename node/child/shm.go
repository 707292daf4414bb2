package child

import (
	"cmp"
	"math"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// The finished-block log: a memory region the child shares with the node (docs/design.md §7,
// "Pausing at once"). The child appends a record for every kernel block it finishes and writes
// Mandelbrot counts straight into the region, so the node can read everything finished while
// the child is frozen (SIGSTOP) and hand it in without waiting for the child to run again —
// which, at idle priority under an owner who keeps every core busy, takes a second or more.
//
// Layout (native byte order: both sides are the same binary on the same machine):
//
//	0   magic
//	8   task: the wire id the records are for (0 while a task is being set up)
//	16  records claimed (may exceed shmRecords: the excess is not logged)
//	24  the child's CPU seconds (float64 bits) when the task began
//	32  ended: the wire id of the task whose kernels are done (see end)
//	64  shmRecords records of 32 bytes: task (written last), start, end, hits
//	    then wire.MaxResultCounts Mandelbrot counts (uint32), the running task's rows from its first
//
// Records are write-once: fields first, the task id last (atomic), so a reader that sees a
// record's task id sees its fields, whether or not the child is stopped mid-way through
// another record. Start and end are absolute units: π samples, Mandelbrot pixels (row ×
// width + column).
const (
	shmMagic   = 0x48594452414c4f47 // "HYDRALOG"
	shmHeader  = 64
	shmRecSize = 32
	// shmRecords bounds the log: 2¹⁶ π blocks of 2²⁰ samples (a task of 2³⁶ samples, far
	// longer than a chunk) or Mandelbrot blocks of ≥ 512 pixels (wire.MaxResultCounts / 512).
	// Blocks beyond it are not logged; a pause then hands in only what the log holds.
	shmRecords = 1 << 16
	shmPixOff  = shmHeader + shmRecords*shmRecSize
	shmSize    = shmPixOff + wire.MaxResultCounts*4
)

// shmEnv tells the child the file descriptor of the shared region (the node passes it as the
// child's first extra file).
const shmEnv = "HYDRA_COMPUTE_LOG_FD"

// shm is a mapping of the finished-block log. A nil *shm logs nothing.
type shm struct {
	b []byte // len shmSize, 8-byte aligned (a page-aligned mapping)
}

func (s *shm) word(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&s.b[off]))
}

// begin starts the log of task (child side). Nothing of the previous task runs any more.
func (s *shm) begin(task uint64, cpu0 float64) {
	if s == nil {
		return
	}
	s.word(8).Store(0)
	s.word(16).Store(0)
	s.word(24).Store(math.Float64bits(cpu0))
	s.word(0).Store(shmMagic)
	s.word(8).Store(task)
}

// end marks the end of task's kernels (child side): its result is on its way by message, and
// its Mandelbrot counts may be released from now on, so a node that freezes the child must not
// read them (shm.ended).
func (s *shm) end(task uint64) {
	if s == nil {
		return
	}
	s.word(32).Store(task)
}

// ended reports whether task's kernels are done (node side): a freeze then waits for its
// result by message instead of reading the log.
func (s *shm) ended(task uint64) bool {
	return s != nil && s.word(32).Load() == task
}

// record logs a finished block [start, end) of task with its hits (child side).
func (s *shm) record(task, start, end, hits uint64) {
	if s == nil {
		return
	}
	i := s.word(16).Add(1) - 1
	if i >= shmRecords {
		return
	}
	off := shmHeader + int(i)*shmRecSize
	s.word(off + 8).Store(start)
	s.word(off + 16).Store(end)
	s.word(off + 24).Store(hits)
	s.word(off).Store(task)
}

// pixels returns the region's count buffer for a task of n pixels, or nil when there is no
// region or n does not fit.
func (s *shm) pixels(n uint64) []uint32 {
	if s == nil || n > wire.MaxResultCounts {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&s.b[shmPixOff])), n)
}

// shmRec is one finished block as the node reads it.
type shmRec struct{ start, end, hits uint64 }

// collect returns the records of task and the child's CPU seconds when it began (node side,
// child frozen). No record (ok false) when the log is not about task: the child had not begun
// it, so it had finished nothing of it.
func (s *shm) collect(task uint64) (recs []shmRec, cpu0 float64, ok bool) {
	if s == nil || s.word(0).Load() != shmMagic || s.word(8).Load() != task {
		return nil, 0, false
	}
	cpu0 = math.Float64frombits(s.word(24).Load())
	n := min(s.word(16).Load(), shmRecords)
	for i := range int(n) {
		off := shmHeader + i*shmRecSize
		if s.word(off).Load() != task {
			continue // claimed, not yet written: that block is not finished
		}
		recs = append(recs, shmRec{s.word(off + 8).Load(), s.word(off + 16).Load(), s.word(off + 24).Load()})
	}
	return recs, cpu0, true
}

// Part is a finished range of a task and its payload, encoded as for a whole result, with its
// commitment (compute.Commitment) where the child or the log had the counts to compute it
// (zero: not computed, the node computes it from the payload).
type Part struct {
	Done    compute.Range
	Payload []byte
	Root    audit.Hash
}

// logParts turns the logged blocks of task t into its finished ranges in task units (π
// samples, Mandelbrot whole rows), each with its payload, in order. pix is the region's count
// buffer for t (Mandelbrot). Records that fall outside the task, span two π commitment blocks
// or overlap one already taken (a block computed again after a --cpus change) are skipped, so
// a malformed log yields less, never a wrong result.
func logParts(t Chunk, recs []shmRec, pix []uint32) []Part {
	lo, hi := t.Range.Start, t.Range.End
	var w uint64 = 1
	if t.Spec.Kind == compute.KindMandelbrot {
		w = uint64(t.Spec.Mandel.Width)
		rows := min(t.Range.Len(), uint64(max(1, wire.MaxResultCounts/t.Spec.Mandel.Width)))
		lo, hi = t.Range.Start*w, (t.Range.Start+rows)*w
		hi = min(hi, lo+uint64(len(pix)))
	}
	slices.SortFunc(recs, func(a, b shmRec) int {
		if a.start != b.start {
			return cmp.Compare(a.start, b.start)
		}
		return cmp.Compare(a.end, b.end)
	})
	// Maximal runs of contiguous, non-overlapping records.
	type run struct {
		start, end uint64
		recs       []shmRec
	}
	var runs []run
	covered := lo
	for _, r := range recs {
		if r.start >= r.end || r.start < covered || r.end > hi {
			continue
		}
		if t.Spec.Kind == compute.KindPi && (r.start/audit.PiBlock != (r.end-1)/audit.PiBlock || r.hits > r.end-r.start) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].end == r.start {
			runs[n-1].end = r.end
			runs[n-1].recs = append(runs[n-1].recs, r)
		} else {
			runs = append(runs, run{r.start, r.end, []shmRec{r}})
		}
		covered = r.end
	}
	var parts []Part
	for _, rn := range runs {
		switch t.Spec.Kind {
		case compute.KindPi:
			if audit.PiLeafCount(rn.start, rn.end) > audit.MaxLeaves {
				continue
			}
			leaves := make([]uint64, audit.PiLeafCount(rn.start, rn.end))
			base := rn.start / audit.PiBlock
			for _, r := range rn.recs {
				leaves[r.start/audit.PiBlock-base] += r.hits
			}
			r := compute.Range{Start: rn.start, End: rn.end}
			root, _ := compute.PiRoot(r, leaves) // zero on an error: the node commits itself
			parts = append(parts, Part{r, compute.EncodePiBlocksPayload(leaves), root})
		case compute.KindMandelbrot:
			a, b := (rn.start+w-1)/w, rn.end/w // whole rows only
			if a >= b {
				continue
			}
			counts := pix[a*w-lo : b*w-lo]
			root, _ := compute.MandelRoot(a, int(w), counts) // zero on an error: the node commits itself
			parts = append(parts, Part{compute.Range{Start: a, End: b}, compute.EncodeMandelPayload(counts), root})
		}
	}
	return parts
}
