package compute

import (
	"fmt"
	"math"
)

// Reduce names how the partial values of a WebAssembly job's chunks combine into its result
// (docs/wasm.md). Every reducer but concat is associative and commutative on 64-bit words, so
// the result is the same bits however the range was split and in whatever order chunks finished;
// concat joins the chunks' output bytes in item order.
type Reduce string

// The reducers. Values are unsigned 64-bit words: sum wraps modulo 2⁶⁴, min and max compare
// unsigned (a module wanting a signed order adds 1<<63 to its values), xor is bitwise.
const (
	ReduceSum    Reduce = "sum"
	ReduceMin    Reduce = "min"
	ReduceMax    Reduce = "max"
	ReduceXor    Reduce = "xor"
	ReduceConcat Reduce = "concat"
)

// Validate reports whether r is one of the reducers.
func (r Reduce) Validate() error {
	switch r {
	case ReduceSum, ReduceMin, ReduceMax, ReduceXor, ReduceConcat:
		return nil
	}
	return fmt.Errorf("reduce: %q is not a reducer (sum, min, max, xor, concat)", string(r))
}

// Identity is the value of an empty range: combining it with v gives v.
func (r Reduce) Identity() uint64 {
	if r == ReduceMin {
		return math.MaxUint64
	}
	return 0
}

// Combine folds two partial values. For concat the words are meaningless (the bytes are the
// result) and Combine sums them, which keeps it total.
func (r Reduce) Combine(a, b uint64) uint64 {
	switch r {
	case ReduceMin:
		return min(a, b)
	case ReduceMax:
		return max(a, b)
	case ReduceXor:
		return a ^ b
	}
	return a + b
}
