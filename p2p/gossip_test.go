package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// inbox collects what a subscription delivers.
type inbox struct {
	mu   sync.Mutex
	msgs []string
	from []peer.ID
}

func (b *inbox) add(from peer.ID, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, string(data))
	b.from = append(b.from, from)
}

func (b *inbox) count(pred func(from peer.ID, msg string) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for i, m := range b.msgs {
		if pred(b.from[i], m) {
			n++
		}
	}
	return n
}

func connect(t *testing.T, a, b *Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Host().Connect(ctx, addrInfo(t, b)); err != nil {
		t.Fatal(err)
	}
}

// TestGossip_ThreeHosts: A—B—C in a line; a message A publishes reaches B
// and C (through B), and A does not hear itself.
func TestGossip_ThreeHosts(t *testing.T) {
	hosts := make([]*Host, 3)
	boxes := make([]*inbox, 3)
	topics := make([]*Topic, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range hosts {
		hosts[i], _ = newTestHost(t, "g", nil)
		boxes[i] = new(inbox)
		tp, err := hosts[i].Topic("announce/1")
		if err != nil {
			t.Fatal(err)
		}
		if again, err := hosts[i].Topic("announce/1"); err != nil || again != tp {
			t.Fatalf("second Topic call: %v, %v", again, err)
		}
		if tp.Name() != "hydra/g/announce/1" {
			t.Fatalf("topic name %q", tp.Name())
		}
		topics[i] = tp
		if err := tp.Subscribe(ctx, boxes[i].add); err != nil {
			t.Fatal(err)
		}
	}
	connect(t, hosts[0], hosts[1])
	connect(t, hosts[1], hosts[2])

	a := hosts[0].ID()
	fromA := func(from peer.ID, msg string) bool { return from == a }
	// Gossip drops messages until the mesh forms: publish until heard.
	n := 0
	waitFor(t, 20*time.Second, "B and C to hear A", func() bool {
		n++
		if err := topics[0].Publish(ctx, fmt.Appendf(nil, "hello %d", n)); err != nil {
			t.Fatal(err)
		}
		return boxes[1].count(fromA) > 0 && boxes[2].count(fromA) > 0
	})
	if got := boxes[0].count(func(peer.ID, string) bool { return true }); got != 0 {
		t.Fatalf("A heard %d of its own messages", got)
	}

	if err := topics[0].Publish(ctx, make([]byte, MaxGossipMessage+1)); !errors.Is(err, ErrGossipTooLarge) {
		t.Fatalf("oversize publish: err = %v, want ErrGossipTooLarge", err)
	}
	if err := topics[0].Publish(ctx, make([]byte, MaxGossipMessage)); err != nil {
		t.Fatalf("publish of exactly MaxGossipMessage: %v", err)
	}

	// Topics are per cluster: a node of another cluster never hears them.
	other, _ := newTestHost(t, "h", nil)
	otherBox := new(inbox)
	ot, err := other.Topic("announce/1")
	if err != nil {
		t.Fatal(err)
	}
	if err := ot.Subscribe(ctx, otherBox.add); err != nil {
		t.Fatal(err)
	}
	connect(t, other, hosts[0])
	marker := "after-other"
	waitFor(t, 20*time.Second, "B to hear the marker", func() bool {
		_ = topics[0].Publish(ctx, []byte(marker))
		return boxes[1].count(func(_ peer.ID, m string) bool { return m == marker }) > 0
	})
	if otherBox.count(func(peer.ID, string) bool { return true }) != 0 {
		t.Fatal("a node of another cluster heard this cluster's topic")
	}
}

// TestGossip_OversizeFromPeerRejected: a peer without Hydra's validator
// publishes a message over MaxGossipMessage; Hydra nodes drop it.
func TestGossip_OversizeFromPeerRejected(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, _ := newTestHost(t, "g", nil)
	box := new(inbox)
	tp, err := h.Topic("announce/1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Subscribe(ctx, box.add); err != nil {
		t.Fatal(err)
	}

	// A plain libp2p node with a plain gossipsub (1 MiB limit, no validator).
	raw, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	psCtx, psCancel := context.WithCancel(context.Background())
	t.Cleanup(psCancel)
	ps, err := pubsub.NewGossipSub(psCtx, raw)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := ps.Join(tp.Name())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := rt.Subscribe() // to be in the mesh
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Cancel)
	if err := raw.Connect(ctx, addrInfo(t, h)); err != nil {
		t.Fatal(err)
	}

	big := bytes.Repeat([]byte("B"), MaxGossipMessage+1)
	isBig := func(_ peer.ID, m string) bool { return len(m) > MaxGossipMessage }
	isSmall := func(_ peer.ID, m string) bool { return len(m) <= MaxGossipMessage }
	// Interleave big and small messages until several small ones arrived:
	// by then big ones published before them have been judged too.
	i := 0
	waitFor(t, 20*time.Second, "small messages from the plain peer", func() bool {
		i++
		if err := rt.Publish(ctx, big); err != nil {
			t.Fatal(err)
		}
		if err := rt.Publish(ctx, fmt.Appendf(nil, "small %d", i)); err != nil {
			t.Fatal(err)
		}
		return box.count(isSmall) >= 3
	})
	if n := box.count(isBig); n != 0 {
		t.Fatalf("%d oversize messages delivered", n)
	}
}
