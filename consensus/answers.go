package consensus

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// What the leader learns from each follower's answers to its AppendEntries: the transport sees
// every request with its answer (AppendEntries, and the pipeline through notedPipeline), and
// keeps, per follower, when it last answered (lastAnswer: evidence of life, autopilot) and when
// it last answered this leadership while holding every entry it had been sent (lastCaughtUp:
// whether it can take part in a commit, a removal's quorum check).

// AppendEntriesPipeline opens raft's pipeline to a follower (the path of
// entries once the follower has caught up) with each of its answers noted
// as AppendEntries notes them. Without it, a follower that refused pipelined
// entries (a full disk) still counted as holding them until raft's next
// plain AppendEntries, which, when no new entry follows (the trailer's
// barrier may have gone through the pipeline already), comes only
// CommitTimeout (5–10 s) after the pipeline gives up: meanwhile its
// heartbeats succeed, and a removal's quorum check counted it reachable.
func (t *transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	w := &notedPipeline{AppendPipeline: p, answers: t.answersFor(id), out: make(chan raft.AppendFuture), done: make(chan struct{})}
	go w.relay()
	return w, nil
}

// notedPipeline is raft's pipeline to one follower with a relay between its
// answers and raft: each answer is noted (answers.noteResult) before raft
// reads it from Consumer.
type notedPipeline struct {
	raft.AppendPipeline
	answers *answers
	out     chan raft.AppendFuture
	done    chan struct{}
	once    sync.Once
}

// Consumer yields the pipeline's answers, each noted.
func (p *notedPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

// Close stops the relay and closes the pipeline.
func (p *notedPipeline) Close() error {
	p.once.Do(func() { close(p.done) })
	return p.AppendPipeline.Close()
}

// relay notes and passes on each answer of the pipeline until Close.
func (p *notedPipeline) relay() {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			p.answers.noteResult(f.Request(), f.Response(), f.Error(), time.Now())
			select {
			case p.out <- f:
			case <-p.done:
				return
			}
		case <-p.done:
			return
		}
	}
}

// answers is what the leader knows of one peer from its answers to the
// leader's AppendEntries (the transport sees each request with its answer).
type answers struct {
	mu     sync.Mutex
	at     time.Time // the last answer of any kind, in any term (lastAnswer)
	term   uint64    // the newest term whose requests it answered; ready and behind are of it
	ready  time.Time // in term: the last answer after which it was not behind
	behind uint64    // in term: the end of entries it failed to store and has not reported holding since (0: none)
}

// note records one answer to req. A peer that failed to store entries (a
// full disk: the follower answers Success false, its LastLog short of them)
// is behind until an answer shows it holds them: a later append of them
// that succeeded, or a heartbeat whose LastLog reaches them. Heartbeats
// alone succeed on such a peer, so an answer counts as ready only while the
// peer is not behind. An answer at a newer term than the request's (the
// peer follows a newer leadership) and an answer to an older term's request
// (one still in flight when this node led before) count for nothing but at.
func (a *answers) note(req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at = now
	if resp.Term != req.Term || !a.inTerm(req.Term) {
		return
	}
	end := req.PrevLogEntry + uint64(len(req.Entries))
	switch {
	case !resp.Success && resp.LastLog < end:
		a.behind = max(a.behind, end)
	case a.behind == 0:
	case resp.Success && end >= a.behind, resp.LastLog >= a.behind:
		// resp.LastLog is the peer's last index before it stored req's entries
		a.behind = 0
	}
	if a.behind == 0 {
		a.ready = now
	}
}

// noteResult records the result of one AppendEntries: its answer (note),
// or err, no answer (the stream failed or timed out): the log up to the
// request's end (PrevLogEntry and the entries it carried) is not known to be
// held, so the peer is behind that end until an answer shows it holds it, as
// after a refusal; a heartbeat (no end) claims nothing. A follower that can take no entries within
// the RPC timeout (a disk that stalls, a link too slow for a batch) cannot
// take part in a commit either, while its heartbeats get through.
func (a *answers) noteResult(req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, err error, now time.Time) {
	if err == nil {
		a.note(req, resp, now)
		return
	}
	end := req.PrevLogEntry + uint64(len(req.Entries))
	if end == 0 {
		return // a heartbeat: it claims nothing of the log
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inTerm(req.Term) {
		a.behind = max(a.behind, end)
	}
}

// inTerm reports whether a request of term term counts (not an older
// leadership's), starting a's record afresh at a newer term. a.mu is held.
func (a *answers) inTerm(term uint64) bool {
	if term < a.term {
		return false
	}
	if term > a.term {
		a.term, a.ready, a.behind = term, time.Time{}, 0
	}
	return true
}

// answersFor is what this node knows of id's answers, made empty at the
// first request to it.
func (t *transport) answersFor(id raft.ServerID) *answers {
	v, ok := t.answered.Load(id)
	if !ok {
		v, _ = t.answered.LoadOrStore(id, new(answers))
	}
	return v.(*answers)
}

// answersOf is what this node knows of id's answers (nil: it never answered).
func (t *transport) answersOf(id raft.ServerID) *answers {
	v, ok := t.answered.Load(id)
	if !ok {
		return nil
	}
	return v.(*answers)
}

// lastAnswer is when id last answered an AppendEntries of this node, in any
// term and whatever it said (zero: never): evidence of life (autopilot).
func (t *transport) lastAnswer(id raft.ServerID) time.Time {
	a := t.answersOf(id)
	if a == nil {
		return time.Time{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at
}

// lastCaughtUp is when id last answered an AppendEntries of this node's
// term term while holding every entry it had been sent in that term (zero:
// never, or not in term): when it last could take part in a commit of this
// leadership (answers.note).
func (t *transport) lastCaughtUp(id raft.ServerID, term uint64) time.Time {
	a := t.answersOf(id)
	if a == nil {
		return time.Time{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.term != term {
		return time.Time{}
	}
	return a.ready
}
