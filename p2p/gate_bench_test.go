package p2p

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/multiformats/go-multiaddr"
)

// BenchmarkRejectedConnections measures what refused keys cost a node:
// clients whose keys the node refuses dial it at about 1,000 attempts per
// second (b.N attempts, over TCP); it reports the node's live heap after
// the flood next to before it (same process: the clients' share counts
// too, so it is an upper bound) and the attempts the gater refused.
//
//	go test -run '^$' -bench RejectedConnections -benchtime 5000x ./p2p/
func BenchmarkRejectedConnections(b *testing.B) {
	node, _ := newTestHost(b, "flood", testKey(b), multiaddr.StringCast("/ip4/127.0.0.1/tcp/0"))
	const clients = 8
	cs := make([]*Host, clients)
	refused := map[peer.ID]bool{}
	for i := range cs {
		cs[i], _ = newTestHost(b, "flood", testKey(b), multiaddr.StringCast("/ip4/127.0.0.1/tcp/0"))
		refused[cs[i].ID()] = true
	}
	node.SetAccess(func(p peer.ID) Access {
		if refused[p] {
			return AccessRefused
		}
		return AccessMember
	})
	target := addrInfo(b, node)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	done := make(chan struct{}, b.N)
	for i := 0; i < b.N; i++ {
		<-tick.C
		c := cs[i%clients]
		go func() {
			defer func() { done <- struct{}{} }()
			c.Host().Peerstore().AddAddrs(target.ID, target.Addrs, time.Minute)
			if sw, ok := c.Host().Network().(*swarm.Swarm); ok {
				sw.Backoff().Clear(target.ID)
			}
			ctx, cancel := context.WithTimeout(network.WithForceDirectDial(context.Background(), "bench"), 5*time.Second)
			defer cancel()
			if _, err := c.Host().Network().DialPeer(ctx, target.ID); err == nil {
				_ = c.Host().Network().ClosePeer(target.ID)
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		<-done
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(before.HeapInuse)/(1<<20), "heap-before-MiB")
	b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-after-MiB")
	b.ReportMetric(float64(node.RefusedConns())/float64(b.N), "refused/attempt")
	if n := len(node.Host().Network().Conns()); n != 0 {
		b.Fatalf("%d connections open after the flood", n)
	}
}
