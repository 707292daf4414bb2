package node

import (
	"log/slog"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

// The cluster's clock, as this node knows it. Hydra's nodes are laptops and small boards whose
// clocks may be off by minutes (drift, a clock set by hand), hours or decades (a Raspberry Pi
// without an RTC boots in 1970, or at its last saved time, until NTP answers). The leader stamps
// what it replicates with the cluster's clock (the median of the nodes' clocks, node/work) and
// publishes it in its activity about every idlePublishEvery; every node, the leader included,
// notes there how far its own clock is from it. The times a node writes into the replicated state
// itself (a job submitted or cancelled, a join token created and when it expires) are then the
// cluster's, not its own: a token made on a board still in 1970 does not expire at once on the
// others, nor one made on a laptop a year ahead live for a year, and a job's times do not run
// backwards (docs/design.md §2, Time).
const (
	// clockSlack is the offset below which this node's clock is taken as it is: gossip delay,
	// ordinary NTP error. Stamps are then exactly what they were before the cluster's clock.
	clockSlack = 10 * time.Second
	// clockWarnAfter is the offset that is logged (once, at warn level, and again only after it
	// was back within it) and shown in status: this node's clock needs fixing.
	clockWarnAfter = time.Hour
	// clockEstimateFor is how long an observation of the cluster's clock is used: a node that no
	// longer hears a leader falls back on its own clock.
	clockEstimateFor = 6 * idlePublishEvery
)

// clusterClock estimates the cluster's clock from the leader's activity. Its zero value
// knows nothing and answers this node's own clock.
type clusterClock struct {
	mu     sync.Mutex
	off    time.Duration // the cluster's clock minus this node's, as last observed
	seen   time.Time     // when (this node's clock, with its monotonic reading)
	warned bool
}

// observe notes that the cluster's clock read at when this node's read now, and warns once
// while the two are more than clockWarnAfter apart.
func (k *clusterClock) observe(at, now time.Time, log *slog.Logger) {
	if at.IsZero() {
		return
	}
	off := at.Round(0).Sub(now.Round(0))
	k.mu.Lock()
	k.off, k.seen = off, now
	warn := off.Abs() > clockWarnAfter && !k.warned
	if off.Abs() <= clockWarnAfter {
		k.warned = false
	} else {
		k.warned = true
	}
	k.mu.Unlock()
	if warn && log != nil {
		log.Warn("this machine's clock is far from the cluster's: the times it stamps follow the cluster's; fix its clock (NTP)",
			"clock", now.Round(0).UTC().Format(time.RFC3339), "cluster", at.UTC().Format(time.RFC3339), "offset", (-off).Round(time.Second))
	}
}

// offset is this node's clock minus the cluster's (0 while it is within clockSlack or no
// recent leader's activity says), for status.
func (k *clusterClock) offset(now time.Time) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen.IsZero() || now.Sub(k.seen) > clockEstimateFor || now.Sub(k.seen) < 0 || k.off.Abs() < clockSlack {
		return 0
	}
	return -k.off
}

// at is the cluster's time when this node's clock reads now, in UTC: the time to write into
// a command this node proposes.
func (k *clusterClock) at(now time.Time) time.Time {
	return now.Add(-k.offset(now)).UTC()
}

// exact is the cluster's time when this node's clock reads now, in UTC, by the last offset
// observed whatever its size: at keeps this node's own clock within clockSlack (what it writes
// into the replicated state stays as it was), but a page that draws the leader's stamps by it
// would be that far off them, seconds. Without a recent observation (none since this node
// started, or none for clockEstimateFor) it answers this node's clock and false: the node does
// not know the cluster's time, and says so rather than pass its own clock for it.
func (k *clusterClock) exact(now time.Time) (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen.IsZero() || now.Sub(k.seen) > clockEstimateFor || now.Sub(k.seen) < 0 {
		return now.UTC(), false
	}
	return now.Add(k.off).UTC(), true
}

// clusterNow is the cluster's time now (clusterClock.at).
func (n *Node) clusterNow() time.Time { return n.clock.at(n.wall()) }

var _ webui.Clock = (*Node)(nil)

// ClusterNow implements webui.Clock: the cluster's time now as this node knows it, which the
// event stream stamps its pings with, so that a page draws lease and commit times (the cluster's)
// by the cluster's clock, not by its browser's nor by an idle cluster's old activity. It is the
// exact estimate (clusterClock.exact), with no clockSlack: a node a few seconds off the cluster
// would otherwise have its page draw every lease and commit that many seconds off. false until
// this node has heard a leader's stamp since it started (and again after clockEstimateFor without
// one): a restarted node's pings then carry no time, where they carried its own clock and a page
// took that for the cluster's for up to a minute.
func (n *Node) ClusterNow() (time.Time, bool) { return n.clock.exact(n.wall()) }

// wall reads this node's clock: time.Now, or a test's skewed one (Node.skew).
func (n *Node) wall() time.Time {
	if d := time.Duration(n.skew.Load()); d != 0 {
		return time.Now().Add(d)
	}
	return time.Now()
}
