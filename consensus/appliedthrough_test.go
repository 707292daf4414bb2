package consensus

import (
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"
)

// countingLogs counts the entries looked up in a log store.
type countingLogs struct {
	raft.LogStore
	gets atomic.Int64
}

func (c *countingLogs) GetLog(index uint64, l *raft.Log) error {
	c.gets.Add(1)
	return c.LogStore.GetLog(index, l)
}

// TestStateEntryInLooksOnlyAtTheLog: after a snapshot's restore the FSM's index lags the
// snapshot's (raft does not tell Restore which index it restores), by the cluster's whole
// history on a node that restarted or was sent a snapshot. WaitForIndex then looked up every
// index from the FSM's to the one waited for, all but the last few compacted away, at every
// poll: a million lookups for a log that starts at index 1,000,000. It now starts at the log's
// first index, and finds the same: a command or configuration entry not applied yet, or none.
func TestStateEntryInLooksOnlyAtTheLog(t *testing.T) {
	const first = 1_000_000
	store := raft.NewInmemStore()
	var entries []*raft.Log
	for i := uint64(first); i < first+10; i++ {
		typ := raft.LogNoop
		if i == first+5 {
			typ = raft.LogCommand
		}
		entries = append(entries, &raft.Log{Index: i, Term: 1, Type: typ})
	}
	if err := store.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	logs := &countingLogs{LogStore: store}
	for _, c := range []struct {
		from, to uint64
		want     bool
		maxGets  int64
	}{
		{1, first + 9, true, 6},          // the FSM's index 0: the command at first+5 is found, first to first+5 looked up
		{1, first + 4, false, 5},         // only no-ops up to there
		{first + 6, first + 9, false, 4}, // past the command: only the rest looked up
		{1, first - 1, false, 0},         // everything compacted
	} {
		logs.gets.Store(0)
		if got := stateEntryIn(logs, c.from, c.to); got != c.want {
			t.Errorf("stateEntryIn(%d, %d) = %v, want %v", c.from, c.to, got, c.want)
		}
		if g := logs.gets.Load(); g > c.maxGets {
			t.Errorf("stateEntryIn(%d, %d) looked up %d entries, want at most %d (the log holds %d to %d)", c.from, c.to, g, c.maxGets, first, first+9)
		}
	}
	if stateEntryIn(&countingLogs{LogStore: raft.NewInmemStore()}, 1, first) {
		t.Error("an empty log holds a state entry")
	}
}
