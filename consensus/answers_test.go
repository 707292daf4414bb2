package consensus

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestAnswersCountOnlyAPeerHoldingWhatItWasSent: the leader's record of one follower's answers
// (answers.noteResult), step by step: a follower that refused entries, or never answered a
// request that carried them (the stream failed or timed out), is behind them, and its
// heartbeats alone (which succeed on a follower whose disk is full) do not make it ready again
// until one shows its log reaches them; answers to an older leadership count for nothing.
func TestAnswersCountOnlyAPeerHoldingWhatItWasSent(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	entries := func(n int) []*raft.Log { return make([]*raft.Log, n) }
	heartbeat := &raft.AppendEntriesRequest{Term: 5}
	var a answers
	steps := []struct {
		what      string
		req       *raft.AppendEntriesRequest
		resp      *raft.AppendEntriesResponse
		err       error
		wantReady bool // ready moved to this step's time
	}{
		{"a heartbeat answered", heartbeat, &raft.AppendEntriesResponse{Term: 5, LastLog: 10, Success: true}, nil, true},
		{"entries 11-12 stored", &raft.AppendEntriesRequest{Term: 5, PrevLogEntry: 10, Entries: entries(2)}, &raft.AppendEntriesResponse{Term: 5, LastLog: 10, Success: true}, nil, true},
		{"entries 13-15 refused (disk full)", &raft.AppendEntriesRequest{Term: 5, PrevLogEntry: 12, Entries: entries(3)}, &raft.AppendEntriesResponse{Term: 5, LastLog: 12}, nil, false},
		{"a heartbeat from a log that ends at 12", heartbeat, &raft.AppendEntriesResponse{Term: 5, LastLog: 12, Success: true}, nil, false},
		{"a heartbeat from a log that ends at 15", heartbeat, &raft.AppendEntriesResponse{Term: 5, LastLog: 15, Success: true}, nil, true},
		{"entries 16-20 unanswered (timed out)", &raft.AppendEntriesRequest{Term: 5, PrevLogEntry: 15, Entries: entries(5)}, nil, errors.New("i/o timeout"), false},
		{"a heartbeat unanswered", heartbeat, nil, errors.New("stream reset"), false},
		{"a heartbeat from a log that ends at 15, again", heartbeat, &raft.AppendEntriesResponse{Term: 5, LastLog: 15, Success: true}, nil, false},
		{"entries 16-20 stored on a retry", &raft.AppendEntriesRequest{Term: 5, PrevLogEntry: 15, Entries: entries(5)}, &raft.AppendEntriesResponse{Term: 5, LastLog: 15, Success: true}, nil, true},
		{"an answer to the previous leadership's request", &raft.AppendEntriesRequest{Term: 4, PrevLogEntry: 20}, &raft.AppendEntriesResponse{Term: 4, LastLog: 20, Success: true}, nil, false},
		{"an answer from a follower of a newer leadership", heartbeat, &raft.AppendEntriesResponse{Term: 6, LastLog: 20}, nil, false},
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i+1) * time.Second)
		before := a.ready
		a.noteResult(s.req, s.resp, s.err, now)
		if got := a.ready.Equal(now); got != s.wantReady {
			t.Fatalf("step %d, %s: ready moved to now %v, want %v (ready %v, was %v, behind %d)", i, s.what, got, s.wantReady, a.ready, before, a.behind)
		}
		if !s.wantReady && !a.ready.Equal(before) {
			t.Fatalf("step %d, %s: ready moved from %v to %v", i, s.what, before, a.ready)
		}
		if answered := a.at.Equal(now); answered != (s.err == nil) {
			t.Fatalf("step %d, %s: the last answer's time moved %v, want %v", i, s.what, answered, s.err == nil)
		}
	}
}
