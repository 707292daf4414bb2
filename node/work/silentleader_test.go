package work

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/node/owner"
)

// TestWorker_LeavesASilentLeaderForTheNewOne: a worker whose exchange with the leader hangs —
// the leader's machine was suspended (a closed lid) with its connections open — syncs with the
// leader its replica learns of next at once, not after callTimeout: its results and its next
// chunks wait on that exchange.
func TestWorker_LeavesASilentLeaderForTheNewOne(t *testing.T) {
	old, next := peer.ID("old-leader"), peer.ID("new-leader")
	var leader atomic.Value
	leader.Store(old)
	hanging := make(chan struct{})   // the exchange with the old leader is in flight
	abandoned := make(chan error, 1) // how it ended
	reached := make(chan struct{})   // the new leader was called
	var calledNew atomic.Bool
	w := NewWorker(WorkerConfig{
		Self:   "worker",
		Leader: func() (peer.ID, bool) { return leader.Load().(peer.ID), true },
		Call: func(ctx context.Context, to peer.ID, _, resp any) error {
			switch to {
			case old:
				select {
				case <-hanging:
				default:
					close(hanging)
				}
				<-ctx.Done() // a stopped machine never answers
				select {
				case abandoned <- ctx.Err():
				default:
				}
				return ctx.Err()
			case next:
				if calledNew.CompareAndSwap(false, true) {
					close(reached)
				}
				*resp.(*syncResponse) = syncResponse{Term: 2, Idle: true}
				return nil
			}
			t.Errorf("called %s", to)
			return context.Canceled
		},
		Runner: partsRunner{},
		Owner:  func() owner.Decision { return owner.Decision{State: owner.StateRun} },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	select {
	case <-hanging:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never called the leader")
	}
	leader.Store(next) // the others elected a new leader; this node's replica knows it
	changed := time.Now()
	const bound = 5 * time.Second // callTimeout is 30 s
	select {
	case <-reached:
	case <-time.After(bound):
		t.Fatalf("the worker still waits on the old leader %s after the new one was known (callTimeout %s)", bound, callTimeout)
	}
	t.Logf("the new leader was called %s after it was known", time.Since(changed).Round(time.Millisecond))
	if err := <-abandoned; err == nil {
		t.Fatal("the exchange with the old leader ended without an error")
	}
}
