//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// downKinds are the faults under which a node's process may be down: the watch does not count
// its exit as a crash, and no job is submitted or checked through it (nor through a closed lid).
var downKinds = map[string]bool{"kill": true, "wipe": true, "leave": true, "fail": true}

// addRules inserts iptables rules (-I) and returns their undo (-D), which runs at most once:
// also at the test's cleanup, so that a test that fails or stops in the middle of a fault leaves
// no rule behind. A rule that could not be inserted is undone with the ones before it.
func (c *chaos) addRules(rules [][]string) (func() error, error) {
	var once sync.Once
	var undoErr error
	added := 0
	undo := func() error {
		once.Do(func() {
			for _, r := range rules[:added] {
				if out, err := exec.Command("iptables", append([]string{"-D"}, r...)...).CombinedOutput(); err != nil && undoErr == nil {
					undoErr = fmt.Errorf("iptables -D %s: %w: %s", strings.Join(r, " "), err, out)
				}
			}
		})
		return undoErr
	}
	c.t.Cleanup(func() { _ = undo() })
	for _, r := range rules {
		if out, err := exec.Command("iptables", append([]string{"-I"}, r...)...).CombinedOutput(); err != nil {
			_ = undo()
			return nil, fmt.Errorf("iptables -I %s: %w: %s", strings.Join(r, " "), err, out)
		}
		added++
	}
	return undo, nil
}

// chaosRuleTag is the comment of every iptables rule the harness inserts.
const chaosRuleTag = "hydra-chaos"

// sweepRules deletes the iptables rules tagged chaosRuleTag: a run killed in the middle of a
// fault (a test timeout, SIGKILL) runs no cleanup, and a rule it left would cut a node of the
// next run (the users and ports come again) or another test's port.
func (c *chaos) sweepRules() {
	out, err := exec.Command("iptables", "-S").CombinedOutput()
	if err != nil {
		c.t.Fatalf("iptables -S (root needed): %v: %s", err, out)
	}
	for _, r := range taggedRules(string(out)) {
		if out, err := exec.Command("iptables", append([]string{"-D"}, r...)...).CombinedOutput(); err != nil {
			c.t.Fatalf("iptables -D %s: %v: %s", strings.Join(r, " "), err, out)
		}
		c.logf("removed a rule an earlier run left: %s", strings.Join(r, " "))
	}
}

// taggedRules returns the rules (for -D) of an `iptables -S` listing that carry chaosRuleTag.
func taggedRules(listing string) [][]string {
	var out [][]string
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || !strings.Contains(line, "--comment "+chaosRuleTag+" ") {
			continue
		}
		out = append(out, f[1:])
	}
	return out
}

// lossRules are cutRules dropping each packet with probability prob only: a flaky Wi-Fi link,
// on the same packets (what the node sends but its API's answers, and what reaches its
// libp2p port).
func lossRules(p *proc, prob float64) [][]string {
	var out [][]string
	for _, r := range cutRules(p) {
		jump := len(r) - 2 // "-j", "DROP"
		rule := append(append([]string(nil), r[:jump]...), "-m", "statistic", "--mode", "random",
			"--probability", strconv.FormatFloat(prob, 'f', 2, 64))
		out = append(out, append(rule, r[jump:]...))
	}
	return out
}

// withJoin returns args with its --join replaced by (or, for the node that founded the
// cluster, given) addr: the path a machine that starts afresh joins the cluster by.
func withJoin(args []string, addr string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--join" {
			i++ // and its value
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "--join", addr)
}

// wipe replaces p's disk: SIGKILL, its data directory's contents moved aside (kept beside its
// log for a post-mortem), off for off, then started again with a new identity key and the
// join path of a usable node. The old peer ID is removed through a usable node, and the new
// one is approved as a member (it asks like any new machine; --admit lan may admit it first).
func (c *chaos) wipe(p *proc, off time.Duration) error {
	oldID := p.id
	c.mu.Lock()
	c.wipes++
	aside := filepath.Join(filepath.Dir(p.dir), fmt.Sprintf("wiped-%d", c.wipes))
	c.mu.Unlock()
	c.logf("disk of %s replaced: SIGKILL, its data moved to %s, started again in %s with a new key", p.name, aside, off)
	p.kill()
	if err := moveAside(p.dir, aside); err != nil {
		return err
	}
	return c.rejoinFresh(p, oldID, off)
}

// rejoinFresh starts p again after off on its empty data directory with a new key, joining
// through a usable node, removes its old key oldID and approves the new one: a machine whose
// disk was replaced.
func (c *chaos) rejoinFresh(p *proc, oldID string, off time.Duration) error {
	newID, err := freshIdentity(p.dir, p.uid)
	if err != nil {
		return err
	}
	time.Sleep(off) // how long the machine stays off
	vias := c.usable(p)
	if len(vias) == 0 {
		return errors.New("no usable node to join through")
	}
	p.args = withJoin(p.args, vias[0].joinAddr())
	c.mu.Lock()
	p.id = newID
	c.mu.Unlock()
	p.start()
	c.logf("%s started again as %s, joining through %s", p.name, newID, vias[0].name)
	c.writePeers()
	// The old key's removal is retried until it is out: a cluster that keeps a member no
	// machine answers for never settles. It may be refused (409) while another voter is down,
	// for as long as that fault lasts.
	gone := func() bool { st, err := c.leaderView(); return err == nil && !isMember(st, oldID) }
	if err := c.waitUntil(4*time.Minute, "old key of "+p.name+" removed", func() error {
		if gone() {
			return nil
		}
		_, err := c.adminVia(p, gone, "remove", oldID)
		return err
	}); err != nil {
		return err
	}
	c.logf("old key of %s (%s) removed", p.name, oldID)
	return c.admitAgain(p, "new key of "+p.name)
}

// admitAgain approves p (its current key) through a usable node until the leader lists it as a
// member. The node may not have asked to join yet (approve answers 404 then): retried.
func (c *chaos) admitAgain(p *proc, what string) error {
	back := func() bool { st, err := c.leaderView(p); return err == nil && isMember(st, p.id) }
	if err := c.waitUntil(3*time.Minute, what+" a member", func() error {
		if back() {
			return nil
		}
		if _, err := c.adminVia(p, back, "approve", p.id); err != nil {
			return err
		}
		if !back() {
			return errors.New("approved; the leader does not list it yet")
		}
		return nil
	}); err != nil {
		return err
	}
	c.logf("%s (%s) a member", what, p.id)
	return nil
}

// leave runs `hydra leave` on p; once it has left and stopped, it is started again after out
// with the join path of a usable node (its raft state is gone: it joins as a fresh node with
// its old key), and approved. A leave refused (409: the voters left would have no quorum)
// changes nothing.
func (c *chaos) leave(p *proc, out time.Duration) error {
	c.logf("hydra leave on %s (%s)", p.name, p.id)
	// A leave whose answer was lost (a timeout) is asked again, as a user would: the node may
	// have left the configuration meanwhile, and would otherwise run on out of the cluster.
	for attempt := 1; ; attempt++ {
		res, err := hydraCLI(c.t, 90*time.Second, "leave", "--api", p.api, "--token", c.token)
		if err == nil {
			break
		}
		exited := false
		select {
		case <-p.exited:
			exited = true
		default:
		}
		if exited {
			c.logf("hydra leave on %s: %v: %s; it stopped all the same", p.name, err, strings.TrimSpace(res))
			break
		}
		if strings.Contains(res, "(HTTP 409)") || attempt == 3 {
			kind := "leave-refused"
			if !strings.Contains(res, "(HTTP 409)") {
				kind = "leave-failed"
			}
			c.logf("hydra leave on %s: %v: %s (%s)", p.name, err, strings.TrimSpace(res), kind)
			c.mu.Lock()
			c.counts[kind]++
			c.mu.Unlock()
			if kind == "leave-failed" {
				return fmt.Errorf("hydra leave on %s: %w: %s", p.name, err, strings.TrimSpace(res))
			}
			return nil
		}
		c.logf("hydra leave on %s: %v: %s (asking again)", p.name, err, strings.TrimSpace(res))
	}
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		return fmt.Errorf("hydra leave answered but %s still runs after 60 s", p.name)
	}
	c.mu.Lock()
	c.counts["left"]++
	c.mu.Unlock()
	time.Sleep(out) // how long it stays out
	vias := c.usable(p)
	if len(vias) == 0 {
		return errors.New("no usable node to join through")
	}
	p.args = withJoin(p.args, vias[0].joinAddr())
	p.start()
	c.logf("%s started again after leaving, joining through %s", p.name, vias[0].name)
	return c.admitAgain(p, p.name)
}

// moveAside moves the contents of dir (a mount point: it stays) into a new directory aside.
func moveAside(dir, aside string) error {
	if err := os.MkdirAll(aside, 0o755); err != nil {
		return fmt.Errorf("wipe: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wipe: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	args := []string{}
	for _, e := range entries {
		args = append(args, filepath.Join(dir, e.Name()))
	}
	if out, err := exec.Command("mv", append(args, aside)...).CombinedOutput(); err != nil {
		return fmt.Errorf("wipe: mv %s: %w: %s", dir, err, out)
	}
	return nil
}

// freshIdentity creates a new identity key in the empty data directory dir, owned by uid, and
// returns its peer ID.
func freshIdentity(dir string, uid uint32) (string, error) {
	key, err := p2p.LoadOrCreateIdentity(filepath.Join(dir, "identity.key"))
	if err != nil {
		return "", fmt.Errorf("new identity: %w", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("new identity: %w", err)
	}
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, uid), dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("chown %s: %w: %s", dir, err, out)
	}
	return id.String(), nil
}

// writePeers rewrites peers.txt (a wiped node has a new peer ID; the old ones are in chaos.log).
func (c *chaos) writePeers() {
	if err := os.WriteFile(filepath.Join(c.logDir, "peers.txt"), []byte(c.peerMap()), 0o644); err != nil {
		c.logf("peers.txt: %v", err)
	}
}

// TestChaosLossRulesAreCutRulesWithAChance checks that a lossy link drops the packets a cut
// cable drops, each with the fault's probability only.
func TestChaosLossRulesAreCutRulesWithAChance(t *testing.T) {
	p := &proc{uid: 42103, httpPort: 7070, p2pPort: 4001}
	cut, loss := cutRules(p), lossRules(p, 0.25)
	if len(loss) != len(cut) {
		t.Fatalf("%d loss rules, %d cut rules", len(loss), len(cut))
	}
	for i := range cut {
		want := strings.Join(cut[i][:len(cut[i])-2], " ") + " -m statistic --mode random --probability 0.25 -j DROP"
		if got := strings.Join(loss[i], " "); got != want {
			t.Errorf("loss rule %d:\n%s\nwant\n%s", i, got, want)
		}
	}
}

// TestChaosSweepFindsTheRulesARunLeft checks that the sweep at a run's start finds the rules a
// killed run left, in the form iptables -D takes, and only those.
func TestChaosSweepFindsTheRulesARunLeft(t *testing.T) {
	p := &proc{uid: 42101, httpPort: 7070, p2pPort: 4001}
	// As iptables -S lists them (it quotes nothing here, and prints -m owner after -p tcp).
	listing := "-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n" +
		"-A INPUT -i lo -p tcp -m tcp --dport 4001 -m comment --comment hydra-chaos -j DROP\n" +
		"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n" +
		"-A OUTPUT -o lo -p tcp -m owner --uid-owner 42101 -m tcp ! --sport 7070 -m comment --comment hydra-chaos -m statistic --mode random --probability 0.25000000000 -j DROP\n"
	got := taggedRules(listing)
	if len(got) != 2 || got[0][0] != "INPUT" || got[1][0] != "OUTPUT" || got[1][len(got[1])-1] != "DROP" {
		t.Fatalf("tagged rules: %q", got)
	}
	for _, r := range cutRules(p) {
		if !strings.Contains(strings.Join(r, " "), "-m comment --comment "+chaosRuleTag+" -j DROP") {
			t.Errorf("cut rule without the tag: %q", r)
		}
	}
}

// TestChaosWithJoinReplacesTheJoinPath checks the join path a wiped or rejoining node starts
// with: one --join, the address given, for a node that had one and for the founder, which had
// none.
func TestChaosWithJoinReplacesTheJoinPath(t *testing.T) {
	got := strings.Join(withJoin([]string{"node", "--join", "/old", "--dedicated"}, "/new"), " ")
	if got != "node --dedicated --join /new" {
		t.Errorf("joiner: %q", got)
	}
	got = strings.Join(withJoin([]string{"node", "--dedicated"}, "/new"), " ")
	if got != "node --dedicated --join /new" {
		t.Errorf("founder: %q", got)
	}
}
