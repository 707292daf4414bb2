// Command kernelpath prints compute.KernelPath(): which kernel implementation this build runs on
// this CPU. Used by scripts/bench-kernels.
package main

import (
	"fmt"

	"github.com/hydra-compute/hydra/compute"
)

func main() { fmt.Println(compute.KernelPath()) }
