package node

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/node/owner"
	"github.com/hydra-compute/hydra/p2p"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
	"github.com/shirou/gopsutil/v4/load"
)

// announceTopic is the gossipsub topic (under hydra/<cluster>/) on which
// every node announces itself about once a second. The trailing number is
// the message format's version.
const announceTopic = "announce/1"

// maxAnnouncement bounds one announcement; a bigger one is dropped.
const maxAnnouncement = 16 << 10

// Announcement is what a node says about itself on the gossip topic: small,
// lossy, and enough for every node's status page and UI. Durable facts (the
// node's name, arch, cores) are also registered through raft.
type Announcement struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Version string   `json:"version"`
	OS      string   `json:"os"`
	Arch    string   `json:"arch"`
	Cores   int      `json:"cores"`
	Load    float64  `json:"load"`
	Uptime  float64  `json:"uptime_seconds"`
	State   string   `json:"state"`
	Reason  string   `json:"reason,omitempty"` // why throttled or paused: "on battery", "cpu 82 °C"…
	Power   string   `json:"power,omitempty"`  // "battery", "mains" or "" (unknown)
	Addrs   []string `json:"addrs"`
	HTTP    string   `json:"http,omitempty"`
	// Every is how long until the sender's next announcement at the latest, in seconds (0: the
	// receiver's own interval). An idle node announces only on a change or every
	// idleAnnounceEvery, and says so, so that it does not look offline meanwhile.
	Every float64 `json:"every_seconds,omitempty"`
	// ClockOffset is the sender's clock minus the cluster's, in whole seconds, as the leader's
	// activity told it (0 within clockSlack): status shows which machine's clock needs fixing.
	ClockOffset float64 `json:"clock_offset_seconds,omitempty"`
	// Hello is said by a node that has just become a member (approved, or started as one): the
	// members answer at once, out of turn, so that it shows them online without waiting for
	// their next announcements (welcome).
	Hello bool `json:"hello,omitempty"`
}

// maxClockOffset bounds an announced clock offset: 250 years, more than any clock is off and
// less than a time.Duration holds.
const maxClockOffset = 250 * 365 * 24 * 3600.0

// decodeAnnouncement parses and checks an announcement received from peer
// from: it must name its sender and stay within sane bounds.
func decodeAnnouncement(from peer.ID, data []byte) (Announcement, error) {
	var a Announcement
	if len(data) > maxAnnouncement {
		return a, fmt.Errorf("announcement of %d bytes exceeds %d", len(data), maxAnnouncement)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("decode announcement: %w", err)
	}
	if a.ID != from.String() {
		return a, fmt.Errorf("announcement names %q but came from %s", a.ID, from)
	}
	if len(a.Name) > 64 || len(a.Version) > 64 || len(a.OS) > 32 || len(a.Arch) > 32 || len(a.State) > 128 || len(a.Reason) > 128 || len(a.HTTP) > 256 {
		return a, fmt.Errorf("announcement from %s: field too long", from)
	}
	if a.Power != "" && a.Power != owner.PowerBattery && a.Power != owner.PowerMains {
		return a, fmt.Errorf("announcement from %s: power %.16q: want battery, mains or nothing", from, a.Power)
	}
	if a.ClockOffset < -maxClockOffset || a.ClockOffset > maxClockOffset {
		return a, fmt.Errorf("announcement from %s: clock offset %g s out of range", from, a.ClockOffset)
	}
	if a.Every < 0 || a.Every > maxAnnounceEvery.Seconds() {
		return a, fmt.Errorf("announcement from %s: every %g s out of range", from, a.Every)
	}
	if a.Cores < 0 || a.Cores > 1<<16 || len(a.Addrs) > 64 {
		return a, fmt.Errorf("announcement from %s: out-of-range cores or addrs", from)
	}
	return a, nil
}

// peerTable keeps the latest announcement of every peer and when it came,
// for Status and NodeNames (which read the entries of members only), and
// when an announced peer was last dialled (learnAddrs). Only members'
// announcements get through gossip, but members come and go: the entries
// of peers that are no longer members are forgotten once they have been
// silent for forgetAfter, and the table never holds more than
// maxPeerEntries peers.
type peerTable struct {
	mu     sync.Mutex
	seen   map[string]seenPeer
	dialed map[string]time.Time // last dial attempt to an announced peer
}

// maxPeerEntries caps the peers a peerTable holds: above the registry's
// 10 000 nodes, so that every member of the largest cluster has its place.
const maxPeerEntries = 12 << 10

// dialEvery is how often an announced, unconnected peer may be dialled.
const dialEvery = 5 * time.Second

// forgetAfter is how long the entry of a peer that is not a member is kept
// after its last announcement, if it announces every d: ten times as long
// as it takes to be shown offline. An announcement that arrives just
// before its sender is admitted (the gate says member a moment later) is
// then still there to be shown.
func forgetAfter(d time.Duration) time.Duration { return 10 * offlineAfter(d) }

// dialDue reports whether an announced, unconnected peer may be dialled
// now (at most every dialEvery), and records the attempt.
func (t *peerTable) dialDue(id string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.dialed[id]) < dialEvery {
		return false
	}
	t.dialed[id] = now
	return true
}

type seenPeer struct {
	ann  Announcement
	when time.Time
}

func newPeerTable() *peerTable {
	return &peerTable{seen: map[string]seenPeer{}, dialed: map[string]time.Time{}}
}

// put records a's announcement, heard at now. A new peer beyond
// maxPeerEntries takes the place of the peer heard from longest ago, one
// that keep rejects if there is any.
func (t *peerTable) put(a Announcement, now time.Time, keep func(id string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.seen[a.ID]; !ok && len(t.seen) >= maxPeerEntries {
		victim, victimKept := "", true
		var oldest time.Time
		for id, sp := range t.seen {
			kept := keep(id)
			if victim == "" || (victimKept && !kept) || (kept == victimKept && sp.when.Before(oldest)) {
				victim, victimKept, oldest = id, kept, sp.when
			}
		}
		delete(t.seen, victim)
		delete(t.dialed, victim)
	}
	t.seen[a.ID] = seenPeer{ann: a, when: now}
}

// prune forgets the peers that keep rejects (not members, not this node)
// and that have not announced for forgetAfter their interval (interval, or
// longer if they said so), and the dial attempts older than dialEvery,
// which no longer hold a dial back.
func (t *peerTable) prune(now time.Time, interval time.Duration, keep func(id string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, sp := range t.seen {
		every := interval
		if sp.ann.Every > 0 {
			every = max(every, time.Duration(sp.ann.Every*float64(time.Second)))
		}
		if now.Sub(sp.when) > forgetAfter(every) && !keep(id) {
			delete(t.seen, id)
		}
	}
	for id, at := range t.dialed {
		if now.Sub(at) >= dialEvery {
			delete(t.dialed, id)
		}
	}
}

func (t *peerTable) get(id string) (seenPeer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.seen[id]
	return s, ok
}

func (t *peerTable) ids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.seen))
	for id := range t.seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// keepPeer reports whether the peer table must keep id's entry however
// long it has been silent: this node's own, and those of members, which
// Status shows (offline, last seen then) as long as they are members.
func (n *Node) keepPeer(id string) bool {
	if id == n.host.ID().String() {
		return true
	}
	pid, err := peer.Decode(id)
	return err == nil && n.host.Access(pid) == p2p.AccessMember
}

// self builds this node's own announcement.
func (n *Node) self() Announcement {
	var l float64
	if avg, err := load.Avg(); err == nil {
		l = avg.Load1
	}
	addrs := n.host.Addrs()
	as := make([]string, 0, len(addrs))
	for _, a := range addrs {
		as = append(as, a.String())
	}
	return Announcement{
		ID:      n.host.ID().String(),
		Name:    n.cfg.Name,
		Version: Version,
		OS:      runtime.GOOS,
		Arch:    runtime.GOARCH,
		Cores:   runtime.NumCPU(),
		Load:    l,
		Uptime:  time.Since(n.started).Seconds(),
		State:   n.workState(),
		Reason:  n.owner.get().Reason,
		Power:   n.owner.power(),
		Addrs:   as,
		HTTP:    n.httpURL,

		ClockOffset: n.clock.offset(n.wall()).Round(time.Second).Seconds(),
	}
}

// announce publishes this node's announcement every interval and records
// announcements from others, until ctx ends.
func (n *Node) announce(ctx context.Context) error {
	topic, err := n.host.Topic(announceTopic)
	if err != nil {
		return fmt.Errorf("announce topic: %w", err)
	}
	// asked wakes the loop when a member is owed an answer (owesAnswer).
	asked := make(chan struct{}, 1)
	err = topic.Subscribe(ctx, func(from peer.ID, data []byte) {
		a, err := decodeAnnouncement(from, data)
		if err != nil {
			n.log.Debug("dropped announcement", "peer", from, "err", err)
			return
		}
		now := time.Now()
		prev, known := n.peers.get(a.ID)
		n.peers.put(a, now, n.keepPeer)
		if owesAnswer(a, prev, known, now, n.cfg.AnnounceInterval) {
			poke(asked)
		}
		n.learnAddrs(ctx, from, a.Addrs)
	})
	if err != nil {
		return fmt.Errorf("subscribe announcements: %w", err)
	}
	go func() {
		// Idle, the loop sleeps until the next announcement is due; a lease or an owner decision
		// (announceWake) wakes it at once, and so do this node's admission and a member owed an
		// answer (welcome).
		t := time.NewTimer(n.cfg.AnnounceInterval)
		defer t.Stop()
		var last Announcement
		var lastAt time.Time
		w := welcome{gap: promptGap(n.cfg.AnnounceInterval)}
		answerOnly := false // this round was woken only because a member is owed an answer
		for {
			me := n.self()
			now := time.Now()
			n.peers.put(me, now, n.keepPeer)
			n.peers.prune(now, n.cfg.AnnounceInterval, n.keepPeer)
			outOfTurn, hello := w.round(now, n.raft.Role())
			me.Hello = hello
			// A working node publishes (a signed gossip message every peer verifies and forwards)
			// in turn: every interval, and at once on a lease or an owner decision. An idle one
			// publishes only when something a peer shows changed, else every idleAnnounceEvery. A
			// round woken only because a member is owed an answer is nobody's turn: the answer goes
			// out when round allows it, at most once per promptGap (welcome.go), not at every
			// announcement that asks for one.
			idle := n.worker != nil && n.worker.Idle()
			if idle {
				me.Every = idleAnnounceEvery.Seconds()
			}
			inTurn := !idle && (!answerOnly || now.Sub(lastAt) >= n.cfg.AnnounceInterval)
			refresh := idle && now.Sub(lastAt) >= idleAnnounceEvery-n.cfg.AnnounceInterval/2
			if outOfTurn || inTurn || refresh || !sameAnnouncement(me, last) {
				if b, err := json.Marshal(me); err == nil {
					if err := topic.Publish(ctx, b); err != nil && ctx.Err() == nil {
						n.log.Debug("publish announcement", "err", err)
					}
				}
				last, lastAt = me, now
				w.sent(now, outOfTurn, hello)
			}
			every := lastAt.Add(n.cfg.AnnounceInterval).Sub(time.Now()) // a working node's next turn
			if idle {
				every = max(n.cfg.AnnounceInterval, lastAt.Add(idleAnnounceEvery).Sub(time.Now()))
			}
			if d, ok := w.wait(time.Now()); ok {
				every = min(every, d)
			}
			t.Reset(every)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				answerOnly = false
			case <-n.announceWake:
				answerOnly = false
			case <-asked:
				w.due, answerOnly = true, true
			}
		}
	}()
	return nil
}

// sameAnnouncement reports whether a and b say the same but for the figures that always move
// (load, uptime).
func sameAnnouncement(a, b Announcement) bool {
	a.Load, a.Uptime, b.Load, b.Uptime = 0, 0, 0, 0
	return a.ID == b.ID && a.Name == b.Name && a.State == b.State && a.Reason == b.Reason && a.Power == b.Power &&
		a.HTTP == b.HTTP && a.Every == b.Every && slices.Equal(a.Addrs, b.Addrs) &&
		math.Abs(a.ClockOffset-b.ClockOffset) < 2 // the same offset measured again, give or take gossip's delay
}

// hostname is os.Hostname without the error, for messages.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// workState is what the node is doing, for announcements and status.
func (n *Node) workState() string {
	if n.worker == nil {
		return "idle"
	}
	return n.worker.State()
}

// learnAddrs records the addresses a peer announced and connects to it if
// not connected yet. Announcements travel through the gossip mesh, so nodes
// that only --join'ed one hub learn of each other this way: after the hub
// dies they can still reach each other (raft dials by peer ID, with the
// addresses in the peerstore).
func (n *Node) learnAddrs(ctx context.Context, from peer.ID, addrs []string) {
	h := n.host.Host()
	var mas []multiaddr.Multiaddr
	for _, s := range addrs {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if ai, err := peer.AddrInfoFromP2pAddr(a); err == nil {
			if ai.ID != from {
				continue
			}
			mas = append(mas, ai.Addrs...)
		} else {
			mas = append(mas, a)
		}
	}
	if len(mas) == 0 {
		return
	}
	h.Peerstore().AddAddrs(from, mas, peerstore.AddressTTL)
	if h.Network().Connectedness(from) == network.Connected || !n.peers.dialDue(from.String(), time.Now()) {
		return
	}
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := h.Connect(cctx, peer.AddrInfo{ID: from}); err != nil {
			n.log.Debug("connect to announced peer", "peer", from, "err", err)
			return
		}
		n.raft.PeerFound(from)
	}()
}
