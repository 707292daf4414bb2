package node

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestPeerTable_ForgetsSilentNonMembers: the peer table kept the latest
// announcement of every peer ever heard, and every peer ever dialled, for
// the life of the node: in a cluster whose members come and go (laptops
// admitted, removed, replaced) it only grew. The entries of peers that are
// no longer members are forgotten once they have been silent for ten times
// the time it takes to be shown offline (longer for a peer that said it
// announces less often); members' entries stay, for Status; the table
// holds at most maxPeerEntries peers, preferring members.
func TestPeerTable_ForgetsSilentNonMembers(t *testing.T) {
	const interval = time.Second
	t0 := time.Unix(1_000_000, 0)
	members := map[string]bool{"self": true, "member": true}
	keep := func(id string) bool { return members[id] }
	tab := newPeerTable()
	for _, id := range []string{"self", "member", "gone", "fresh"} {
		tab.put(Announcement{ID: id}, t0, keep)
	}
	tab.put(Announcement{ID: "slow", Every: maxAnnounceEvery.Seconds()}, t0, keep)
	tab.dialDue("gone", t0)

	later := t0.Add(forgetAfter(interval) + time.Millisecond)
	tab.put(Announcement{ID: "fresh"}, later, keep)
	tab.prune(later, interval, keep)
	want := []string{"fresh", "member", "self", "slow"}
	if got := tab.ids(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after %v: peers %v, want %v", forgetAfter(interval), got, want)
	}
	if len(tab.dialed) != 0 {
		t.Errorf("dial attempts %v kept past the dial window", tab.dialed)
	}
	// A peer that announces every minute goes once it has been silent ten
	// times as long as it takes to be shown offline.
	if tab.prune(t0.Add(forgetAfter(maxAnnounceEvery)-time.Second), interval, keep); !slices.Contains(tab.ids(), "slow") {
		t.Error("a peer announcing every minute was forgotten before forgetAfter(1 min)")
	}
	if tab.prune(t0.Add(forgetAfter(maxAnnounceEvery)+time.Second), interval, keep); slices.Contains(tab.ids(), "slow") {
		t.Error("a peer announcing every minute is kept after forgetAfter(1 min)")
	}
	// Members are kept however long they are silent: Status shows them
	// offline, last seen then.
	if tab.prune(t0.Add(24*time.Hour), interval, keep); !slices.Contains(tab.ids(), "member") || !slices.Contains(tab.ids(), "self") {
		t.Errorf("members forgotten: %v", tab.ids())
	}

	// The cap: members heard from longest ago are the last to go.
	tab = newPeerTable()
	tab.put(Announcement{ID: "member"}, t0, keep)
	for i := range maxPeerEntries + 100 {
		tab.put(Announcement{ID: fmt.Sprint("peer-", i)}, t0.Add(time.Duration(i+1)*time.Millisecond), keep)
	}
	if n := len(tab.ids()); n > maxPeerEntries {
		t.Fatalf("%d peers in the table, want at most %d", n, maxPeerEntries)
	}
	if !slices.Contains(tab.ids(), "member") || slices.Contains(tab.ids(), "peer-0") || !slices.Contains(tab.ids(), fmt.Sprint("peer-", maxPeerEntries+99)) {
		t.Error("the cap did not push out the oldest non-members first")
	}
}
