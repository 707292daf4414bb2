//go:build linux

package main

// The cluster harness (scripts/internal/procluster) bound to this program's flags.

import (
	"os/exec"
	"strings"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// sess is this run: its work directory and the cleanup on every way out.
var sess = &procluster.Session{Prog: "benchcluster"}

// fatalf reports, kills every process this program started, cleans up and exits 1.
func fatalf(format string, args ...any) { sess.Fatalf(format, args...) }

// hasDedicated says whether the binary's `hydra node` takes --dedicated
// (builds with owner-activity detection do; older ones refuse the flag).
var hasDedicated bool

func probeFlags() {
	out, _ := exec.Command(*flagHydra, "node", "-h").CombinedOutput()
	hasDedicated = strings.Contains(string(out), "-dedicated")
}

// newCluster prepares n nodes of -hydra under dir (extra(i): node i's own
// flags), with --dedicated where the binary knows it and --dht=false.
func newCluster(dir, prefix string, n int, extra func(i int) []string) *procluster.Cluster {
	c, err := procluster.NewCluster(*flagHydra, dir, prefix, n, func(i int) []string {
		var args []string
		if hasDedicated {
			// a node with owner-activity detection: this machine is there to compute
			args = append(args, "--dedicated")
		}
		args = append(args, "--dht=false")
		if extra != nil {
			args = append(args, extra(i)...)
		}
		return args
	})
	sess.Check(err)
	return c
}
