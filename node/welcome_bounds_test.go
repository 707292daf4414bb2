package node

import (
	"testing"
	"time"
)

// TestWelcome_Bounded: a node that becomes a member says hello in helloCount announcements,
// promptGap apart; a member owed answers (a flood of joiners, a peer that comes and goes)
// answers at most once per promptGap; a node that is no member sends nothing out of turn; an
// announcement in turn answers whoever asked before it and holds back no later answer; and only
// a hello, a member never heard from or one shown offline is owed an answer.
func TestWelcome_Bounded(t *testing.T) {
	const interval = 200 * time.Millisecond
	gap := promptGap(interval)
	t0 := time.Unix(1_000_000, 0)
	w := welcome{gap: gap}
	w.due = true
	if out, hello := w.round(t0, ""); out || hello {
		t.Fatalf("waiting for approval: out of turn %v, hello %v; want neither", out, hello)
	}
	// Admitted: helloCount hellos, gap apart, then none.
	now := t0
	for i := range helloCount {
		out, hello := w.round(now, "member")
		if !out || !hello {
			t.Fatalf("hello %d at +%v: out of turn %v, hello %v", i, now.Sub(t0), out, hello)
		}
		w.sent(now, out, hello)
		if out, _ := w.round(now.Add(gap-time.Millisecond), "member"); out {
			t.Fatalf("hello %d: another out of turn within %v", i, gap)
		}
		d, ok := w.wait(now)
		if i < helloCount-1 && (!ok || d != gap) {
			t.Fatalf("after hello %d: wait %v %v, want %v", i, d, ok, gap)
		}
		now = now.Add(gap)
	}
	if out, hello := w.round(now, "member"); out || hello {
		t.Fatalf("after %d hellos: out of turn %v, hello %v", helloCount, out, hello)
	}
	if _, ok := w.wait(now); ok {
		t.Fatal("nothing due, yet wait says something is")
	}
	// A flood of joiners asking for an answer every millisecond for ten gaps.
	answers := 0
	for step := time.Duration(0); step < 10*gap; step += time.Millisecond {
		w.due = true
		if out, _ := w.round(now.Add(step), "member"); out {
			answers++
			w.sent(now.Add(step), true, false)
		}
	}
	if answers > 10 {
		t.Fatalf("%d answers in %v, want at most one per %v", answers, 10*gap, gap)
	}
	// An announcement in turn answers whoever asked before it, and does not hold back the answer
	// owed to whoever asks just after it.
	now = now.Add(20 * gap)
	w.due = true
	w.sent(now, false, false)
	if out, _ := w.round(now, "member"); out {
		t.Fatal("owed an answer still after an announcement in turn")
	}
	w.due = true
	if out, _ := w.round(now.Add(time.Millisecond), "member"); !out {
		t.Fatal("an announcement in turn held back an answer")
	}
	// Removed and approved again: hello again.
	w.round(now.Add(20*gap), "")
	if _, hello := w.round(now.Add(21*gap), "member"); !hello {
		t.Fatal("approved again: no hello")
	}

	idle := Announcement{ID: "p", Every: idleAnnounceEvery.Seconds()}
	for _, c := range []struct {
		what   string
		a      Announcement
		prev   seenPeer
		known  bool
		answer bool
	}{
		{"a hello", Announcement{ID: "p", Hello: true}, seenPeer{when: t0}, true, true},
		{"a member never heard from", Announcement{ID: "p"}, seenPeer{}, false, true},
		{"a member heard just now", Announcement{ID: "p"}, seenPeer{when: t0.Add(-interval)}, true, false},
		{"a member shown offline", Announcement{ID: "p"}, seenPeer{when: t0.Add(-offlineAfter(interval))}, true, true},
		{"an idle member silent for its interval", idle, seenPeer{ann: idle, when: t0.Add(-idleAnnounceEvery)}, true, false},
		{"an idle member shown offline", idle, seenPeer{ann: idle, when: t0.Add(-offlineAfter(idleAnnounceEvery))}, true, true},
	} {
		if got := owesAnswer(c.a, c.prev, c.known, t0, interval); got != c.answer {
			t.Errorf("%s: owes an answer %v, want %v", c.what, got, c.answer)
		}
	}
	if d := announcedEvery(idle, interval); d != idleAnnounceEvery {
		t.Errorf("an idle peer announces every %v, want %v", d, idleAnnounceEvery)
	}
	if d := announcedEvery(Announcement{Every: 0.1}, interval); d != interval {
		t.Errorf("a peer that says it announces every 100 ms: every %v, want %v (never sooner than this node's)", d, interval)
	}
}
