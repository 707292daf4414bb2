package node

import "time"

// A node only shows a member online once it has heard that member's announcement as a member's
// (the gossip validator drops the announcements of peers that are not members in its eyes). A
// node just approved had dropped everything it heard while it waited, and an idle member
// announces only every idleAnnounceEvery: the newcomer showed the others offline for seconds.
// So a node that becomes a member (approved, or started as one) says hello in its first
// helloCount announcements, and a member that hears a hello, or a member it had never heard
// from or had come to show offline, announces at once, out of turn. Hellos and answers each
// keep promptGap from the node's previous one of the kind, so that a flood of joiners or a peer that comes
// and goes costs a member at most one answer more per promptGap. Neither the announcements in
// turn nor the hellos hold answers back: a member that has just announced, before the newcomer
// counted it as a member, answers at once all the same.

// helloCount is how many announcements a node that has just become a member says hello in: a
// member whose replica has not applied the admission yet drops the first one.
const helloCount = 3

// promptGap is the least time between two hellos, or two answers, of a node that announces
// every interval.
func promptGap(interval time.Duration) time.Duration { return min(interval, time.Second) }

// welcome is the announce loop's bookkeeping of out-of-turn announcements; only the loop uses it.
// Hellos and answers are bounded apart: hellos by their count, answers by their rate, so that a
// node in its own hello window answers a newcomer at once all the same.
type welcome struct {
	gap        time.Duration
	lastHello  time.Time // the node's latest announcement that said hello
	lastAnswer time.Time // the node's latest announcement out of turn to answer
	due        bool      // a member is owed an answer
	hellos     int       // announcements still to say hello in
	role       string    // this node's role as of the last round
	answering  bool      // this round's announcement, if out of turn, is an answer
}

// round is called on each turn of the announce loop with this node's current role: it reports
// whether an announcement must go out now, out of turn, and whether it says hello. A node that
// is no member (waiting for approval) sends nothing out of turn: no member would hear it.
func (w *welcome) round(now time.Time, role string) (outOfTurn, hello bool) {
	if role != w.role {
		if w.role == "" {
			w.hellos = helloCount
		}
		w.role = role
	}
	if role == "" {
		w.due, w.hellos, w.answering = false, 0, false
		return false, false
	}
	hello = w.hellos > 0
	helloNow := hello && now.Sub(w.lastHello) >= w.gap
	w.answering = !helloNow && w.due && now.Sub(w.lastAnswer) >= w.gap
	return helloNow || w.answering, hello
}

// sent records an announcement published at now, in turn or out of turn as round said, and
// whether it said hello: any announcement answers whoever was owed an answer.
func (w *welcome) sent(now time.Time, outOfTurn, hello bool) {
	w.due = false
	if outOfTurn && w.answering {
		w.lastAnswer = now
	}
	if hello && w.hellos > 0 {
		w.hellos--
		w.lastHello = now
	}
}

// wait is how long until an out-of-turn announcement that is due may go out, and whether one is.
func (w *welcome) wait(now time.Time) (time.Duration, bool) {
	var at time.Time
	switch {
	case w.hellos > 0 && w.due:
		at = w.lastHello.Add(w.gap)
		if a := w.lastAnswer.Add(w.gap); a.Before(at) {
			at = a
		}
	case w.hellos > 0:
		at = w.lastHello.Add(w.gap)
	case w.due:
		at = w.lastAnswer.Add(w.gap)
	default:
		return 0, false
	}
	return max(0, at.Sub(now)), true
}

// owesAnswer reports whether an announcement a, heard at now from a member whose previous
// announcement this node holds as prev (known: it holds one), calls for an answer: a hello, a
// member never heard from before, or one this node shows offline (silent for offlineAfter the
// interval it announces at; interval by default). Its answer lets that member show this node
// online at once.
func owesAnswer(a Announcement, prev seenPeer, known bool, now time.Time, interval time.Duration) bool {
	return a.Hello || !known || now.Sub(prev.when) >= offlineAfter(announcedEvery(prev.ann, interval))
}

// announcedEvery is how often the sender of a announces at the latest: interval, or longer if
// it said so (an idle node).
func announcedEvery(a Announcement, interval time.Duration) time.Duration {
	if a.Every > 0 {
		return max(interval, time.Duration(a.Every*float64(time.Second)))
	}
	return interval
}
