//go:build !linux

package main

import (
	"fmt"
	"os"
)

// The benchmark needs Linux (Pdeathsig, /proc; see scripts/internal/procluster); elsewhere the
// program only says so, so that `go build ./...` works on every OS.
func main() {
	fmt.Fprintln(os.Stderr, "benchcluster: Linux only")
	os.Exit(2)
}
