package consensus

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
)

// clusterParallel is how many tests that call t.Parallel this package runs at once when
// -parallel is not given (go test's default is GOMAXPROCS, 2 on a 2-core machine).
//
// The package's cluster tests (real raft over real libp2p hosts at testMultiplier) mostly wait
// on raft's timers: a one-node cluster alone takes 6–12 s to elect its first leader (raft's
// heartbeat timeout, 6 s here, randomised up to twice that). Run one at a time under -race, the
// whole package used 72 s of CPU in 15 minutes. Not more than four at once all the same: some
// burst (seven nodes starting together, a 10,000-job snapshot), and the race suite runs the
// other packages on the same cores.
//
// Tests that assert outcomes, not latencies, call t.Parallel and run beside each other. Go
// runs every test that does not first, one at a time, so the tests that measure a latency or a
// quiet window, or reuse a fixed port, keep the machine to themselves:
//
//   - quiet_test.go (measurement windows and latency bounds), Test_DeadVoterReplaced (how soon
//     the vote moves), Test_MultiNode_EvenVoterStepIsBrief (the gap between two configurations),
//     Test_SilentLeaderReplacedByWatch (failover by the silence watch alone),
//     TestReadmitWakesOnConnect (how soon the leader adds a node back), and
//     TestReadmitAfterRemoveRestartedUndiscovered and TestRemovedStaysOutUnlessApproved (a node
//     reopened on the port it had: a parallel test could take it meanwhile);
//   - the tests without a cluster, which take milliseconds.
const clusterParallel = 4

// TestMain raises the default -parallel to clusterParallel (see there); an explicit -parallel
// wins.
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			given = true
		}
	})
	if !given && runtime.GOMAXPROCS(0) < clusterParallel {
		if err := flag.Set("test.parallel", strconv.Itoa(clusterParallel)); err != nil {
			fmt.Fprintf(os.Stderr, "consensus tests: set -parallel: %v\n", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}
