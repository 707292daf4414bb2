//go:build !wasip1

package main

import (
	"flag"
	"fmt"
)

// Natively, `go run ./examples/montecarlo -hi 1000000` prints the value the module gives for the
// same paths and the price it implies.
func main() {
	lo := flag.Uint64("lo", 0, "first path")
	hi := flag.Uint64("hi", 1_000_000, "end of the paths (exclusive)")
	p := flag.String("params", "", "the job's params")
	flag.Parse()
	setParams(*p)
	v := payoffs(*lo, *hi)
	fmt.Println(v, float64(v)/float64(*hi-*lo)/1e6)
}
