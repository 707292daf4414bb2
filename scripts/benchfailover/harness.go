//go:build linux

package main

// The flags, and the cluster harness (scripts/internal/procluster) bound to them.

import (
	"flag"
	"runtime"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

var (
	flagHydra     = flag.String("hydra", "", "path to the hydra binary (required)")
	flagMode      = flag.String("mode", "failover", "failover or noflap")
	flagWork      = flag.String("work", "", "work directory (default: a new temporary one, removed at the end)")
	flagNodes     = flag.Int("nodes", 5, "cluster size for failover, idle and noflap")
	flagVoters    = flag.Int("voters", 3, "voters the cluster is expected to keep")
	flagRuns      = flag.Int("runs", 10, "failover runs")
	flagJoinNodes = flag.Int("join-nodes", 7, "nodes started at once for the bootstrap measurement")
	flagJoinRuns  = flag.Int("join-runs", 5, "bootstrap runs (0 to skip)")
	flagIdle      = flag.Duration("idle", 60*time.Second, "idle CPU/memory window (0 to skip)")
	flagDuration  = flag.Duration("duration", 10*time.Minute, "noflap: how long to watch")
	flagHogs      = flag.Int("hogs", 2*runtime.NumCPU(), "noflap: busy processes saturating the cores")
	flagNodeArgs  = flag.String("node-args", "", "extra flags for every hydra node (space-separated)")
	flagKeep      = flag.Bool("keep", false, "keep the work directory")
	flagStripped  = flag.String("stripped", "", "a build of the same binary with -ldflags='-s -w', for its size")
)

// sess is this run: its work directory and the cleanup on every way out.
var sess = &procluster.Session{Prog: "benchfailover"}

// fatalf reports, kills every process this program started, cleans up and exits 1.
func fatalf(format string, args ...any) { sess.Fatalf(format, args...) }

// newCluster prepares n nodes of -hydra under dir, each with -node-args.
func newCluster(dir, prefix string, n int) *procluster.Cluster {
	c, err := procluster.NewCluster(*flagHydra, dir, prefix, n, func(int) []string {
		return strings.Fields(*flagNodeArgs)
	})
	sess.Check(err)
	return c
}
