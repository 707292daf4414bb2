package consensus

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// failingApp is an echoApp whose applies fail locally (a full disk: diskFull) once failHere is
// set, on this node only: the other replicas apply the same entries.
type failingApp struct {
	echoApp
	failHere atomic.Bool
}

func (a *failingApp) Apply(op byte, payload []byte, index uint64) any {
	if a.failHere.Load() {
		return diskFull{}
	}
	return a.echoApp.Apply(op, payload, index)
}

// A leader whose replica fails to apply a committed entry (its disk is full or failing) stops;
// the entry is committed and the other replicas apply it. Its proposer is told so as "the
// leader is stopping" (ErrShutdown: the API's 503, a follower's forward retried on the next
// leader), never as a refusal: the command was not refused, and a refusal is final (a 4xx, or
// the 500 of a submit). Before, the ApplyFailure (and ErrApplyStopped for every later entry)
// came back as a refusal (ErrRejected): a follower's forwarded command failed for good and
// its client was told that a write the cluster had committed was refused.
func TestLeaderApplyFailureIsNotARefusal(t *testing.T) {
	t.Parallel()
	apps := make([]*failingApp, 3)
	fatal := make(chan int, 3)
	nodes := startCluster(t, 3, "applyfail", func(i int, c *Config) {
		apps[i] = &failingApp{}
		c.App = apps[i]
		c.OnFatal = func(*ApplyFailure) { fatal <- i } // the node stops, as package node does
	})
	stopped := make(chan struct{})
	go func() { // stops each node whose replica failed, as its process would
		defer close(stopped)
		for range 2 {
			nodes[<-fatal].kill()
		}
	}()
	leader := waitAgreed(t, nodes)
	apps[slices.Index(nodes, leader)].failHere.Store(true)
	follower := otherThan(nodes, leader)

	// A follower's command, forwarded to the leader whose replica fails: the next leader
	// answers it (commands are idempotent), however many tries the election takes.
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	for {
		res, err := follower.r.Apply(ctx, Command{Op: OpAppFirst, Payload: []byte("forwarded")})
		if err == nil {
			if string(res) != `"forwarded"` {
				t.Fatalf("result %s, want the command's own", res)
			}
			break
		}
		if errors.Is(err, ErrRejected) {
			t.Fatalf("a command the failing leader committed was answered as refused: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatalf("no leader answered the command: %v", err)
		}
	}

	// The new leader's own proposal, its replica failing in turn: ErrShutdown, not a refusal.
	var next *testNode
	waitUntil(t, testDeadline, "a new leader", func() error {
		for _, n := range nodes { // not alive(): the stopper goroutine writes dead
			if n != leader && n.r.IsLeader() {
				next = n
				return nil
			}
		}
		return errors.New("none yet")
	})
	apps[slices.Index(nodes, next)].failHere.Store(true)
	actx, acancel := context.WithTimeout(context.Background(), testDeadline)
	defer acancel()
	_, err := next.r.Apply(actx, Command{Op: OpAppFirst, Payload: []byte("own")})
	if !errors.Is(err, ErrShutdown) || errors.Is(err, ErrRejected) {
		t.Fatalf("the failing leader's own proposal: %v, want ErrShutdown and no refusal", err)
	}
	select {
	case <-stopped:
	case <-time.After(testDeadline):
		t.Fatal("the failing nodes did not stop")
	}
}
