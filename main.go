// Command hydra is the one binary every Hydra machine runs: `hydra node`
// joins (or forms) a cluster; the other subcommands talk to a running node.
// See README.md and `hydra help`.
package main

import (
	"os"

	"github.com/hydra-compute/hydra/node/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
