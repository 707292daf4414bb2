//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

// inject picks a fault and a node (at most two nodes under a fault at once) and starts it; a
// fault with a duration ends on its own goroutine.
func (c *chaos) inject(faults *sync.WaitGroup) {
	kinds := []string{"kill", "lid", "cut", "disk", "remove", "loss", "wipe", "leave", "fail"}
	kind := kinds[c.rng.IntN(len(kinds))]
	c.mu.Lock()
	if len(c.busy) >= 2 {
		c.mu.Unlock()
		return
	}
	var free []*proc
	for _, p := range c.ps {
		if c.busy[p] == "" {
			free = append(free, p)
		}
	}
	c.mu.Unlock()
	// The leader half the time, when it is free.
	var target *proc
	if c.rng.IntN(2) == 0 {
		for _, p := range free {
			if st, err := p.status(); err == nil && st.Leader == p.id {
				target = p
			}
		}
	}
	if target == nil {
		target = free[c.rng.IntN(len(free))]
	}
	if (kind == "wipe" || kind == "fail") && !c.mayWipe(target) {
		c.logf("disk of %s not replaced now (a voter's data lost with another's, or with fewer than 3 voters, loses the quorum for good): a power cut instead", target.name)
		kind = "kill"
	}
	secs := func(lo, hi int) time.Duration { return time.Duration(lo+c.rng.IntN(hi-lo+1)) * time.Second }
	var hold time.Duration
	switch kind {
	case "kill":
		hold = secs(1, 10)
	case "lid":
		hold = secs(2, 40)
	case "cut":
		hold = secs(2, 30)
	case "disk":
		hold = secs(5, 30)
	case "remove", "leave":
		hold = secs(2, 16) // how long it stays out
	case "loss":
		hold = secs(5, 40)
	case "wipe", "fail":
		hold = secs(1, 10) // how long the machine stays off
	}
	// The share of packets a lossy link drops, drawn here: the fault loop's draws replay a seed.
	prob := 0.1 + float64(c.rng.IntN(41))/100
	c.mu.Lock()
	c.busy[target] = kind
	c.counts[kind]++
	c.mu.Unlock()
	faults.Add(1)
	go func() {
		defer faults.Done()
		defer func() { c.mu.Lock(); delete(c.busy, target); c.mu.Unlock() }()
		if err := c.fault(kind, target, hold, prob); err != nil {
			c.fail(fmt.Errorf("%s of %s: %w", kind, target.name, err))
		}
	}()
}

// mayWipe reports whether p's data may be lost now: a non-voter's always, a voter's only while
// no other disk is being replaced and the leader lists at least 3 voters, so that the voters
// whose data is intact stay a majority. Two voters of three replaced at once lose the quorum for
// good, which only hydra recover brings back (seed 41: n0's disk replaced, then n4's 5 s later).
func (c *chaos) mayWipe(p *proc) bool {
	st, err := c.leaderView()
	if err != nil {
		return false // no leader to ask: p may be a voter
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	voters, isVoter := 0, false
	for _, ns := range st.Nodes {
		if ns.Role == webui.RoleVoter || ns.Role == webui.RoleLeader {
			voters++
			isVoter = isVoter || ns.ID == p.id
		}
	}
	if !isVoter {
		return true
	}
	for q, kind := range c.busy {
		if q != p && (kind == "wipe" || kind == "fail") {
			return false
		}
	}
	return voters >= 3
}

// fault applies one fault to p for hold and undoes it; prob is a lossy link's share of packets
// dropped.
func (c *chaos) fault(kind string, p *proc, hold time.Duration, prob float64) error {
	switch kind {
	case "kill":
		c.logf("SIGKILL %s, restart in %s", p.name, hold)
		p.kill()
		time.Sleep(hold) // how long the machine stays off
		p.start()
		c.logf("restarted %s", p.name)
	case "lid":
		c.logf("lid closed on %s (SIGSTOP) for %s", p.name, hold)
		if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("SIGSTOP: %w", err)
		}
		time.Sleep(hold)
		if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("SIGCONT: %w", err)
		}
		c.logf("lid opened on %s", p.name)
	case "cut":
		c.logf("cable of %s cut for %s", p.name, hold)
		undo, err := c.addRules(cutRules(p))
		if err != nil {
			return err
		}
		time.Sleep(hold)
		if err := undo(); err != nil {
			return err
		}
		c.logf("cable of %s back", p.name)
	case "loss":
		c.logf("link of %s loses %.0f%% of its packets for %s", p.name, 100*prob, hold)
		undo, err := c.addRules(lossRules(p, prob))
		if err != nil {
			return err
		}
		time.Sleep(hold)
		if err := undo(); err != nil {
			return err
		}
		c.logf("link of %s sound again", p.name)
	case "disk":
		c.logf("disk of %s full for %s", p.name, hold)
		c.mu.Lock()
		c.mayExit[p] = true
		c.mu.Unlock()
		filler := filepath.Join(p.dir, "filler")
		if err := fillDisk(filler); err != nil {
			return err
		}
		time.Sleep(hold)
		if err := os.Remove(filler); err != nil {
			return fmt.Errorf("free the disk: %w", err)
		}
		select {
		case <-p.exited:
			c.logf("disk of %s free again; it had stopped: started again", p.name)
			c.mu.Lock()
			c.counts["disk-stop"]++
			c.mu.Unlock()
			p.start()
		default:
			c.logf("disk of %s free again", p.name)
		}
		c.mu.Lock()
		delete(c.mayExit, p)
		c.mu.Unlock()
	case "remove":
		return c.removeApprove(p, hold)
	case "wipe":
		return c.wipe(p, hold)
	case "fail":
		return c.failDisk(p, hold)
	case "leave":
		return c.leave(p, hold)
	}
	return nil
}

// cutRules are the iptables rules (for -I or -D) that cut a loopback node off: every TCP
// packet its user sends but its API's answers (the harness reads its status), and every
// connection attempt to its libp2p port. Its dials come from ephemeral ports (the node
// turns reuseport off), so a rule on its port alone would leave them up. Each carries the
// comment chaosRuleTag, by which a later run sweeps what a run killed mid-fault left behind.
func cutRules(p *proc) [][]string {
	return [][]string{
		{"OUTPUT", "-o", "lo", "-p", "tcp", "-m", "owner", "--uid-owner", strconv.Itoa(int(p.uid)),
			"!", "--sport", strconv.Itoa(p.httpPort), "-m", "comment", "--comment", chaosRuleTag, "-j", "DROP"},
		{"INPUT", "-i", "lo", "-p", "tcp", "--dport", strconv.Itoa(p.p2pPort), "-m", "comment", "--comment", chaosRuleTag, "-j", "DROP"},
	}
}

// fillDisk writes filler until its file system is full.
func fillDisk(filler string) error {
	f, err := os.Create(filler)
	if err != nil {
		return fmt.Errorf("fill the disk: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("fill the disk: %w", err)
		}
	}
}

// admin runs a hydra admin command against p, retried for 60 s while there is no leader
// (an earlier fault may have left none for a while).
func (c *chaos) admin(p *proc, args ...string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := hydraCLI(c.t, 30*time.Second, append(args, "--api", p.api, "--token", c.token)...)
		if err == nil {
			return out, nil
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("hydra %s: %w: %s", strings.Join(args, " "), err, out)
		}
		c.logf("hydra %s on %s: %v: %s (retrying)", args[0], p.name, err, strings.TrimSpace(out))
		time.Sleep(time.Second) // retry pace
	}
}

// usable returns the nodes under no fault, but except: running, awake, connected, with room on
// their disk, and members (a node the harness removed stays under its fault until it is a
// member again). At most two nodes are under a fault, so three or more are usable.
func (c *chaos) usable(except *proc) []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*proc
	for _, p := range alive(c.ps, except) {
		if c.busy[p] == "" {
			out = append(out, p)
		}
	}
	return out
}

// adminVia runs a hydra admin command through a usable node other than p, chosen anew at
// every attempt (the one used last may have come under a fault meanwhile: killed, cut,
// removed), for up to 60 s. done, checked before each retry, says whether an attempt that
// reported an error took effect all the same (its answer lost). It returns the error of the
// last attempt and its output.
func (c *chaos) adminVia(p *proc, done func() bool, args ...string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		vias := c.usable(p)
		if len(vias) == 0 {
			return "", fmt.Errorf("hydra %s: no usable node to run it on", args[0])
		}
		via := vias[i%len(vias)]
		out, err := hydraCLI(c.t, 30*time.Second, append(args, "--api", via.api, "--token", c.token)...)
		if err == nil {
			c.logf("hydra %s %s through %s", args[0], p.name, via.name)
			return out, nil
		}
		err = fmt.Errorf("hydra %s through %s: %w: %s", strings.Join(args, " "), via.name, err, strings.TrimSpace(out))
		if done() {
			c.logf("%v; it took effect all the same", err)
			return out, nil
		}
		if time.Now().After(deadline) {
			return out, err
		}
		c.logf("%v (retrying)", err)
		time.Sleep(time.Second) // retry pace
	}
}

// leaderView returns the status of the leader as the usable nodes see it (majorityLeader); also
// are nodes under a fault that may lead all the same (a node the harness is approving again).
func (c *chaos) leaderView(also ...*proc) (webui.Status, error) {
	read := func(ps []*proc) []webui.Status {
		var out []webui.Status
		for _, q := range ps {
			if st, err := q.status(); err == nil {
				out = append(out, st)
			}
		}
		return out
	}
	return majorityLeader(read(c.usable(nil)), read(also))
}

// majorityLeader returns the status of a node (among usable's or also's) that says it leads and
// that a majority of the usable views name as their leader. A node cut off or paused may still
// believe it leads, and a removed node keeps the configuration it had: neither view is the
// cluster's.
func majorityLeader(usable, also []webui.Status) (webui.Status, error) {
	named := map[string]int{}
	for _, st := range usable {
		if st.Leader != "" {
			named[st.Leader]++
		}
	}
	for _, st := range append(append([]webui.Status(nil), usable...), also...) {
		if st.Leader == st.Self.ID && 2*named[st.Self.ID] > len(usable) {
			return st, nil
		}
	}
	return webui.Status{}, fmt.Errorf("no leader a majority of the %d usable nodes answering agree on (%v)", len(usable), named)
}

// isMember reports whether st lists id as a member of the cluster (a raft server).
func isMember(st webui.Status, id string) bool {
	for _, ns := range st.Nodes {
		if ns.ID == id && ns.Role != webui.RoleNone {
			return true
		}
	}
	return false
}

// removeApprove evicts p with `hydra remove` through a usable node and, once it is out, admits
// it again (readmit).
func (c *chaos) removeApprove(p *proc, out time.Duration) error {
	st, err := p.status()
	if err != nil {
		c.logf("remove of %s: no status (%v), not removed", p.name, err)
		return nil
	}
	fp := st.Fingerprint
	c.logf("hydra remove %s (%s)", p.name, p.id)
	gone := func() bool { st, err := c.leaderView(); return err == nil && !isMember(st, p.id) }
	if _, err := c.adminVia(p, gone, "remove", p.id); err != nil {
		// The only voter left cannot be removed (409), nor a healthy voter while another is
		// down and the voters left would have no quorum (409), and one fault may leave the
		// cluster with no leader for longer than the retries: none is a defect. A removal whose
		// answers were all lost may still commit once a leader is back: then it is out, and
		// must be approved again like any other.
		var st webui.Status
		if werr := c.waitUntil(30*time.Second, "a leader", func() (e error) { st, e = c.leaderView(); return e }); werr == nil && !isMember(st, p.id) {
			c.logf("%s removed after all (%v)", p.name, err)
			return c.readmit(p, fp, out)
		}
		c.logf("%s not removed: %v", p.name, err)
		kind := "remove-unanswered" // no leader through the retries
		if strings.Contains(err.Error(), "(HTTP 409)") {
			kind = "remove-refused"
		}
		c.mu.Lock()
		c.counts[kind]++
		c.mu.Unlock()
		return nil
	}
	return c.readmit(p, fp, out)
}

// readmit waits until p, removed, is gone from every usable node's members, keeps it out for
// out, then approves it again through a usable node (chosen then: the one that removed it may
// have been removed or stopped meanwhile) and waits until the leader lists it again.
func (c *chaos) readmit(p *proc, fp string, out time.Duration) error {
	c.mu.Lock()
	c.counts["removed"]++
	c.mu.Unlock()
	if err := c.waitUntil(60*time.Second, p.name+" gone from the members", func() error {
		answered := 0
		for _, q := range c.usable(p) {
			st, err := q.status()
			if err != nil {
				continue
			}
			answered++
			if isMember(st, p.id) {
				return fmt.Errorf("%s still lists it as a member", q.name)
			}
		}
		if answered == 0 {
			return errors.New("no usable node answers")
		}
		return nil
	}); err != nil {
		return err
	}
	time.Sleep(out) // how long it stays out
	c.logf("hydra approve %s (%s)", fp, p.name)
	back := func() bool { st, err := c.leaderView(p); return err == nil && isMember(st, p.id) }
	if _, err := c.adminVia(p, back, "approve", p.id); err != nil {
		return err
	}
	if err := c.waitUntil(120*time.Second, p.name+" a member again", func() error {
		st, err := c.leaderView(p)
		if err != nil {
			return err
		}
		if !isMember(st, p.id) {
			return errors.New("the leader does not list it")
		}
		return nil
	}); err != nil {
		return err
	}
	c.logf("%s a member again", p.name)
	return nil
}

// waitUntil polls cond every 200 ms until it holds or limit passes.
func (c *chaos) waitUntil(limit time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: not within %s: %w", what, limit, err)
}

// TestChaosUsableSkipsNodesUnderAFault checks the harness's own choice of the nodes it runs
// admin commands through and reads membership from: none under a fault, a removal included
// (a removed node keeps the configuration it had, and its API cannot approve anyone).
func TestChaosUsableSkipsNodesUnderAFault(t *testing.T) {
	c := newChaos(t, 1)
	for i := range 5 {
		c.ps = append(c.ps, &proc{name: fmt.Sprintf("n%d", i), exited: make(chan struct{})})
	}
	c.busy[c.ps[1]] = "remove"
	c.busy[c.ps[3]] = "cut"
	var got []string
	for _, p := range c.usable(c.ps[0]) {
		got = append(got, p.name)
	}
	if strings.Join(got, ",") != "n2,n4" {
		t.Fatalf("usable but n0 with n1 removed and n3 cut: %v, want n2,n4", got)
	}
}

// TestChaosMajorityLeaderIgnoresAStaleClaim checks that the leader the harness trusts is the
// one most usable nodes name, not a node that still believes it leads (back from a cut cable
// or a closed lid, or removed), and that a node being approved again may be it.
func TestChaosMajorityLeaderIgnoresAStaleClaim(t *testing.T) {
	view := func(self, leader string) webui.Status {
		return webui.Status{Self: webui.NodeRef{ID: self}, Leader: leader}
	}
	usable := []webui.Status{view("n0", "n2"), view("n2", "n2"), view("n3", "n2"), view("n1", "n1")}
	st, err := majorityLeader(usable, nil)
	if err != nil || st.Self.ID != "n2" {
		t.Fatalf("leader %q (%v), want n2: n1 claims it alone", st.Self.ID, err)
	}
	if st, err := majorityLeader([]webui.Status{view("n0", "n1"), view("n1", "n1"), view("n2", "n2"), view("n3", "n2")}, nil); err == nil {
		t.Fatalf("leader %q with the usable nodes split 2–2, want none", st.Self.ID)
	}
	st, err = majorityLeader([]webui.Status{view("n0", "n4"), view("n2", "n4"), view("n3", "n4")}, []webui.Status{view("n4", "n4")})
	if err != nil || st.Self.ID != "n4" {
		t.Fatalf("leader %q (%v), want n4, the node approved again, which all name", st.Self.ID, err)
	}
}
