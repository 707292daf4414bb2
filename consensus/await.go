package consensus

import (
	"context"

	"github.com/hashicorp/raft"
)

// await waits for f, a future of this node's raft, and returns its error: ctx's error if ctx
// ends first, raft.ErrRaftShutdown once raft has stopped without answering it.
//
// Every wait on a raft future goes through it, because hashicorp/raft does not answer every
// future it took: an entry committed and queued for the FSM goroutine when raft shuts down
// is dropped with its future (hashicorp/raft#498, open), and a plain f.Error() then waits for
// ever. Shutdown waits for this package's goroutines, so one such wait would keep a node from
// stopping. The goroutine left waiting on such a future is never woken; there is one per
// dropped entry at most, only once raft is down.
func (r *Raft) await(ctx context.Context, f raft.Future) error {
	answer := make(chan error, 1)
	go func() { answer <- f.Error() }()
	select {
	case err := <-answer:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.raftDown:
		select {
		case err := <-answer: // answered as raft stopped
			return err
		default:
			return raft.ErrRaftShutdown
		}
	}
}
