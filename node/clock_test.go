package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/syncbuf"
	"github.com/hydra-compute/hydra/webui"
)

// TestClusterClock: a node takes the cluster's clock from the leader's activity: its stamps
// follow it once its own is more than clockSlack off, it warns once while more than
// clockWarnAfter off (and again only after it was back), and it falls back on its own clock
// when no leader's activity came for clockEstimateFor.
func TestClusterClock(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	var k clusterClock
	now := time.Date(1970, 1, 1, 0, 3, 0, 0, time.UTC) // a board without an RTC, just booted
	if got := k.at(now); !got.Equal(now) {
		t.Fatalf("no leader heard: %s, want this node's clock", got)
	}
	cluster := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	k.observe(cluster, now, log)
	k.observe(cluster.Add(time.Second), now.Add(time.Second), log)
	if got := k.at(now.Add(2 * time.Second)); !got.Equal(cluster.Add(2 * time.Second)) {
		t.Fatalf("stamped %s, want the cluster's %s", got, cluster.Add(2*time.Second))
	}
	if off := k.offset(now.Add(time.Second)); off != now.Sub(cluster) {
		t.Fatalf("offset %s", off)
	}
	if n := strings.Count(logged.String(), "far from the cluster's"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, logged.String())
	}
	if got := k.at(now.Add(clockEstimateFor + 2*time.Second)); !got.Equal(now.Add(clockEstimateFor + 2*time.Second)) {
		t.Fatalf("an old estimate: stamped %s, want this node's clock", got)
	}
	// Within the slack: this node's clock as it is (gossip's delay is no offset).
	k.observe(now.Add(3*time.Second), now, log)
	if got := k.at(now); !got.Equal(now) {
		t.Fatalf("3 s off: stamped %s, want this node's %s", got, now)
	}
	// Off again: a second warning.
	k.observe(now.Add(-2*clockWarnAfter), now, log)
	if n := strings.Count(logged.String(), "far from the cluster's"); n != 2 {
		t.Fatalf("warned %d times, want twice:\n%s", n, logged.String())
	}
}

// TestActivityOrderedByTerm: a deposed leader's activity does not replace its successor's, however
// far ahead its clock is.
func TestActivityOrderedByTerm(t *testing.T) {
	var b activityBox
	now := time.Now()
	if !b.set(webui.Activity{Term: 5, Leader: "new", At: now}) {
		t.Fatal("refused the first activity")
	}
	if b.set(webui.Activity{Term: 4, Leader: "old", At: now.Add(24 * time.Hour)}) || b.cur.Leader != "new" {
		t.Fatalf("an earlier term's activity replaced the current one: %+v", b.cur)
	}
	if !b.set(webui.Activity{Term: 5, Leader: "new", At: now.Add(-time.Hour)}) {
		t.Fatal("refused the same term's next activity")
	}
}

// TestSkewedNodeStampsTheClusterClock: in a real two-node cluster, a follower whose clock is 30
// years ahead learns the cluster's clock from the leader's activity, stamps the job it submits
// and the join token it creates with it (the token expires in 24 h on every node, not in 30
// years), says how far off it is in its status and announces it, so the leader's status shows it
// too.
func TestSkewedNodeStampsTheClusterClock(t *testing.T) {
	const ahead = 30 * 365 * 24 * time.Hour
	var logs syncbuf.Buffer
	nodes := startClusterWith(t, 2, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)).With("node", c.Name) })
	leader := waitLeader(t, nodes, 30*time.Second)
	follower := without(nodes, leader)[0]
	follower.skew.Store(int64(ahead))
	near := func(want, got time.Time) error {
		if d := got.Sub(want); d.Abs() > time.Minute {
			return fmt.Errorf("%s, want about %s", got, want)
		}
		return nil
	}
	offsetOf := func(st webui.Status, id string) float64 {
		for _, ns := range st.Nodes {
			if ns.ID == id {
				return ns.ClockOffset
			}
		}
		return 0
	}
	waitFor(t, 60*time.Second, "the follower's status shows its clock's offset", func() error {
		st, err := getStatus(follower)
		if err != nil {
			return err
		}
		if off := offsetOf(st, follower.ID().String()); off != ahead.Seconds() {
			return fmt.Errorf("offset %g s, want %g", off, ahead.Seconds())
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := follower.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := near(time.Now(), j.SubmittedAt); err != nil {
		t.Fatalf("submitted at %v", err)
	}
	tok, err := follower.CreateToken(ctx, webui.TokenRequest{Role: "worker"}, follower.APIToken())
	if err != nil {
		t.Fatal(err)
	}
	if err := near(time.Now().Add(24*time.Hour), tok.Expires); err != nil {
		t.Fatalf("the token expires %v", err)
	}
	waitFor(t, 30*time.Second, "the leader's status shows the follower's clock", func() error {
		st, err := getStatus(leader)
		if err != nil {
			return err
		}
		if off := offsetOf(st, follower.ID().String()); off != ahead.Seconds() {
			return fmt.Errorf("offset %g s", off)
		}
		if off := offsetOf(st, leader.ID().String()); off != 0 {
			return fmt.Errorf("the leader's own offset %g s", off)
		}
		return nil
	})
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "far from the cluster's") != strings.Contains(line, "node="+follower.cfg.Name) && strings.Contains(line, "far from") {
			t.Fatalf("a warning from the wrong node: %s", line)
		}
	}
	if n := strings.Count(logs.String(), "far from the cluster's"); n != 1 {
		t.Fatalf("%d warnings of the follower's clock, want one", n)
	}
}

// TestPingStampsTheExactClusterClock: in a real two-node cluster, a follower whose clock is a few
// seconds ahead (within clockSlack, so that it stamps what it writes with its own clock) stamps
// the pings of its event stream with the cluster's clock all the same, to well under a second:
// the page draws the leader's lease and commit stamps by them. Before, its pings carried its own
// clock, and its page drew every lease and every commit those seconds off.
func TestPingStampsTheExactClusterClock(t *testing.T) {
	const ahead = 5 * time.Second // < clockSlack
	nodes := startClusterWith(t, 2, nil)
	follower := without(nodes, waitLeader(t, nodes, 30*time.Second))[0]
	follower.skew.Store(int64(ahead))
	waitFor(t, 60*time.Second, "the follower's ping stamped with the cluster's clock", func() error {
		before := time.Now()
		stamp, err := firstPing(follower)
		if err != nil {
			return err
		}
		if stamp.Before(before.Add(-time.Second)) || stamp.After(time.Now().Add(time.Second)) {
			return fmt.Errorf("stamped %s, want the leader's clock about %s", stamp.Format(time.RFC3339Nano), before.UTC().Format(time.RFC3339Nano))
		}
		return nil
	})
	if got := follower.clusterNow(); got.Sub(time.Now()) < ahead-time.Second {
		t.Fatalf("the follower stamps %s, want its own clock within the slack (%s ahead)", got, ahead)
	}
}

// TestRestartedNodePingsNoTimeUntilItHearsTheLeader: a node restarted with a clock an hour ahead
// sends pings without a time while it has not heard a leader (its cluster, stopped, has none),
// where it sent its own clock and a page took it for the cluster's for up to a minute; once the
// other node is back and a leader elected, its pings carry the cluster's time, the leader's stamp.
func TestRestartedNodePingsNoTimeUntilItHearsTheLeader(t *testing.T) {
	const ahead = time.Hour
	nodes := startCluster(t, 2)
	leader := waitLeader(t, nodes, 30*time.Second)
	follower := without(nodes, leader)[0]
	follower.stop(t)
	leader.stop(t)

	again := newTestNode(t, follower.dir, follower.cfg.Name, nil)
	again.skew.Store(int64(ahead))
	again.start(t)
	var stamp time.Time
	waitFor(t, 30*time.Second, "the restarted node's event stream", func() (err error) {
		stamp, err = firstPing(again)
		return err
	})
	if !stamp.IsZero() {
		t.Fatalf("a node that has not heard a leader since it started stamped its ping %s (its own clock, %s ahead), want no time",
			stamp.Format(time.RFC3339Nano), ahead)
	}

	other := newTestNode(t, leader.dir, leader.cfg.Name, nil)
	connectAll(t, []*testNode{again, other})
	other.start(t)
	both := []*testNode{again, other}
	waitFor(t, 60*time.Second, "the restarted node's ping stamped with the leader's clock", func() error {
		l, err := leaderIn(both)
		if err != nil {
			return err
		}
		stamp, err := firstPing(again)
		if err != nil {
			return err
		}
		// Two clocks: the leader stamps the one nearer its own (node/work, stampLocked).
		if want := l.wall(); stamp.Sub(want).Abs() > 2*time.Second {
			return fmt.Errorf("stamped %s, want the leader's clock, %s", stamp.Format(time.RFC3339Nano), want.UTC().Format(time.RFC3339Nano))
		}
		return nil
	})
}

// firstPing reads the first event of n's event stream, a ping, and returns its stamp.
func firstPing(n *testNode) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.HTTPURL()+"/api/v1/events", nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("events: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			if event != "ping" {
				return time.Time{}, fmt.Errorf("the first event is %q, not a ping", event)
			}
			var p struct {
				Now time.Time `json:"now"`
			}
			if err := json.Unmarshal([]byte(d), &p); err != nil {
				return time.Time{}, fmt.Errorf("ping %q: %w", d, err)
			}
			return p.Now, nil
		}
	}
	return time.Time{}, fmt.Errorf("no ping: %v", sc.Err())
}
