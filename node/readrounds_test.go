package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

// TestReadRoundsShareAsksAndNeverAnswerStale: the read barriers of one node share their asks
// for the leader's read index. While one ask is out, every barrier that comes waits for the next
// one, which starts when the first ends: 20 barriers during an ask cost one more ask, not 20
// (each costs the leader a round of heartbeats, and a read of a job the replica does not hold
// runs one). None of them takes the index of the ask that was out when it came: that index
// was taken before, and could miss a write committed just before the barrier came. A barrier
// whose own deadline ends first gives up with a 503's error, the round going on for the others.
func TestReadRoundsShareAsksAndNeverAnswerStale(t *testing.T) {
	var rr readRounds
	var asks atomic.Int32
	started := make(chan int32, 10)
	release := make(chan struct{}, 10)
	ask := func() (uint64, error) {
		k := asks.Add(1)
		started <- k
		<-release
		return uint64(k) * 100, nil // each ask's index: 100, 200, …
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first := make(chan uint64, 1)
	go func() {
		idx, err := rr.next(ctx, ask)
		if err != nil {
			t.Error(err)
		}
		first <- idx
	}()
	if k := <-started; k != 1 {
		t.Fatalf("first ask numbered %d", k)
	}
	// Ask 1 is out: these barriers came after it began.
	const late = 20
	var wg sync.WaitGroup
	got := make(chan uint64, late)
	for range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx, err := rr.next(ctx, ask)
			if err != nil {
				t.Error(err)
			}
			got <- idx
		}()
	}
	// One of them gives up before any round answers it.
	short, shortCancel := context.WithCancel(ctx)
	shortErr := make(chan error, 1)
	go func() { _, err := rr.next(short, ask); shortErr <- err }()
	waitFor(t, 10*time.Second, "every late barrier waits for a round", func() error {
		rr.mu.Lock()
		defer rr.mu.Unlock()
		if rr.waiting == nil || rr.waiting.waiters < late+1 {
			return errors.New("not every late barrier waits yet")
		}
		return nil
	})
	shortCancel()
	if err := <-shortErr; !errors.Is(err, webui.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("a barrier whose deadline ended: %v, want unavailable (503), cancelled", err)
	}
	release <- struct{}{} // ask 1 answers the first barrier only
	if idx := <-first; idx != 100 {
		t.Errorf("the first barrier got index %d, want ask 1's 100", idx)
	}
	if k := <-started; k != 2 {
		t.Fatalf("second ask numbered %d", k)
	}
	release <- struct{}{}
	wg.Wait()
	close(got)
	for idx := range got {
		if idx != 200 {
			t.Errorf("a barrier that came while ask 1 was out got index %d, want ask 2's 200 (100 is stale)", idx)
		}
	}
	if n := asks.Load(); n != 2 {
		t.Errorf("%d asks for 1 + %d barriers, want 2", n, late)
	}
	// Quiet again: the next barrier starts a round of its own.
	release <- struct{}{}
	if idx, err := rr.next(ctx, ask); err != nil || idx != 300 {
		t.Errorf("a barrier once the rounds are over: %d, %v; want ask 3's 300", idx, err)
	}
}
