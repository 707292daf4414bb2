// Command freeports prints N loopback port numbers, one a line, for scripts that start node
// processes which bind them later (scripts/ui-test): free on TCP and UDP now, outside the
// kernel's ephemeral range, and all different (internal/localport).
//
// A shell's usual way, binding ":0" and closing, draws from the ephemeral range: the kernel may
// hand the same number out twice in a row (a node's p2p and HTTP listeners then collide, as the
// system tests' nodes did once in CI), and any outgoing connection may take it before the node
// binds it.
//
// Usage:
//
//	go run ./scripts/internal/freeports N
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/hydra-compute/hydra/internal/localport"
)

// maxPorts bounds N: a script needs a few ports per node.
const maxPorts = 1000

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: freeports N")
		os.Exit(2)
	}
	ports, err := freePorts(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "freeports:", err)
		os.Exit(1)
	}
	for _, p := range ports {
		fmt.Println(p)
	}
}

// freePorts parses n (1 to maxPorts) and returns that many distinct free ports.
func freePorts(n string) ([]int, error) {
	k, err := strconv.Atoi(n)
	if err != nil || k < 1 || k > maxPorts {
		return nil, fmt.Errorf("N %q: want a number from 1 to %d", n, maxPorts)
	}
	out := make([]int, 0, k)
	for range k {
		p, err := localport.Free()
		if err != nil {
			return nil, fmt.Errorf("port %d of %d: %w", len(out)+1, k, err)
		}
		out = append(out, p)
	}
	return out, nil
}
