// Command collatz is the native reference of c/collatz.c (the same algorithm in Go, used by the
// tests to check the module's results): `go run ./examples/collatz -hi 1000000`.
package main

import (
	"flag"
	"fmt"
)

func steps(n uint64) uint64 {
	var s uint64
	for n != 1 && s < 1<<24-1 {
		if n&1 == 1 {
			n = 3*n + 1
		} else {
			n >>= 1
		}
		s++
	}
	return s
}

// best is collatz.c's hydra_map.
func best(lo, hi uint64) uint64 {
	var b uint64
	for i := lo; i < hi; i++ {
		n := i + 1
		if v := steps(n)<<40 | n&(1<<40-1); v > b {
			b = v
		}
	}
	return b
}

func main() {
	lo := flag.Uint64("lo", 0, "first item")
	hi := flag.Uint64("hi", 1_000_000, "end of the items (exclusive)")
	flag.Parse()
	v := best(*lo, *hi)
	fmt.Printf("%d (start %d, %d steps)\n", v, v&(1<<40-1), v>>40)
}
