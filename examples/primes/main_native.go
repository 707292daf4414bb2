//go:build !wasip1

package main

import (
	"flag"
	"fmt"
)

// Natively, `go run ./examples/primes -lo 0 -hi 1000000 -params '{"k":2}'` prints the value the
// module gives for the same items: the reference for tests and speed comparisons.
func main() {
	lo := flag.Uint64("lo", 0, "first item")
	hi := flag.Uint64("hi", 1_000_000, "end of the items (exclusive)")
	p := flag.String("params", "", "the job's params")
	flag.Parse()
	setParams(*p)
	fmt.Println(count(*lo, *hi))
}
