// Command kernelpath prints compute.KernelPath(): which kernel implementation this build runs on
// this CPU, chosen by measurement (and on standard error how: compute.KernelReport). Used by
// scripts/bench-kernels.
package main

import (
	"fmt"
	"os"

	"github.com/hydra-compute/hydra/compute"
)

func main() {
	fmt.Println(compute.KernelPath())
	fmt.Fprintln(os.Stderr, compute.KernelReport())
}
