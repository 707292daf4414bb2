package p2p

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestGossip_StrangerSubscriptionsBounded: a stranger's gossipsub says it
// subscribes to many topics, of other clusters, of none, with long names;
// each would be a key of the router's topic map for as long as it stays
// connected, so one peer could grow it without bound. Only short names of
// this cluster's topics are kept, and no more than a few beyond the ones
// this node joined; the subscription to a joined topic still counts.
func TestGossip_StrangerSubscriptionsBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, _ := newTestHost(t, "g", nil)
	h.SetAccess(func(p peer.ID) Access { return AccessOutsider })
	tp, err := h.Topic("announce/1")
	if err != nil {
		t.Fatal(err)
	}

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
	var junk []string
	for i := range 200 {
		junk = append(junk, fmt.Sprintf("junk/%d", i), fmt.Sprintf("hydra/g/junk/%d", i))
	}
	junk = append(junk, "hydra/g/"+strings.Repeat("x", 4096))
	// Subscribed before the legitimate topic, and before connecting: the
	// hello carries them all, in one RPC, so once the legitimate
	// subscription is seen the junk was judged too.
	for _, name := range append(junk, tp.Name()) {
		rt, err := ps.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := rt.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Cancel)
	}
	if err := raw.Connect(ctx, addrInfo(t, h)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the stranger's subscription to the joined topic", func() bool {
		return slices.Contains(tp.t.ListPeers(), raw.ID())
	})
	h.mu.Lock()
	router := h.ps
	h.mu.Unlock()
	kept := 0
	for _, name := range junk {
		if slices.Contains(router.ListPeers(name), raw.ID()) {
			if !strings.HasPrefix(name, "hydra/g/") || len(name) > maxTopicName {
				t.Errorf("subscription to %.40q kept", name)
			}
			kept++
		}
	}
	if kept > maxPendingTopics {
		t.Errorf("%d subscriptions to topics this node did not join kept, want at most %d", kept, maxPendingTopics)
	}
}

// TestTopicFilterKeepsKnownTopics: the topics a node will join (Config.Topics) are kept before it
// joins them, even once other names filled the filter's spare places for good (anyone who knows
// the cluster's name can fill them); an unknown name is then refused.
func TestTopicFilterKeepsKnownTopics(t *testing.T) {
	f := newTopicFilter("g", "announce/1", "activity/1")
	for i := range maxPendingTopics {
		if !f.keep(fmt.Sprintf("hydra/g/junk/%d", i)) {
			t.Fatalf("spare place %d refused", i)
		}
	}
	if f.keep("hydra/g/other") {
		t.Fatal("a name beyond the spare places was kept")
	}
	for _, name := range []string{"hydra/g/announce/1", "hydra/g/activity/1"} {
		if !f.keep(name) {
			t.Fatalf("%s, a topic the node will join, was refused with the spare places full", name)
		}
	}
	if f.keep("hydra/h/announce/1") {
		t.Fatal("another cluster's topic was kept")
	}
}
