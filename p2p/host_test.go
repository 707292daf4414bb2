package p2p

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

func TestNew_TCPPortInUse(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = New(context.Background(), Config{
		Key:     testKey(t),
		Listen:  []multiaddr.Multiaddr{multiaddr.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port))},
		Cluster: "c",
	})
	if !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("err = %v, want ErrAddrInUse", err)
	}
}

func TestNew_PortTakenByAnotherHost(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	for _, addr := range a.Host().Network().ListenAddresses() {
		_, err := New(context.Background(), Config{
			Key:     testKey(t),
			Listen:  []multiaddr.Multiaddr{addr},
			Cluster: "c",
		})
		if !errors.Is(err, ErrAddrInUse) {
			t.Fatalf("listen on %s taken by another host: err = %v, want ErrAddrInUse", addr, err)
		}
	}
}

func TestNew_UDPPortInUse(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	_, err = New(context.Background(), Config{
		Key:     testKey(t),
		Listen:  []multiaddr.Multiaddr{multiaddr.StringCast(fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", port))},
		Cluster: "c",
	})
	if !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("err = %v, want ErrAddrInUse", err)
	}
}

func TestNew_RequiresKeyAndCluster(t *testing.T) {
	if _, err := New(context.Background(), Config{Cluster: "c"}); err == nil {
		t.Error("no error without a key")
	}
	if _, err := New(context.Background(), Config{Key: testKey(t)}); err == nil {
		t.Error("no error without a cluster")
	}
}

func TestHost_AddrsAreFullAndLoopbackLast(t *testing.T) {
	h, _ := newTestHost(t, "c", nil, multiaddr.StringCast("/ip4/0.0.0.0/tcp/0"))
	addrs := h.Addrs()
	if len(addrs) == 0 {
		t.Fatal("no addresses")
	}
	seenLoopback := false
	for _, a := range addrs {
		id, err := a.ValueForProtocol(multiaddr.P_P2P)
		if err != nil || id != h.ID().String() {
			t.Errorf("%s does not end in /p2p/%s", a, h.ID())
		}
		lb := manet.IsIPLoopback(a)
		if seenLoopback && !lb {
			t.Errorf("non-loopback %s after a loopback address in %v", a, addrs)
		}
		seenLoopback = seenLoopback || lb
	}
	if !seenLoopback {
		t.Errorf("no loopback address among %v (wildcard should include it)", addrs)
	}
}

func TestHost_PingAndIdentify(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	b, _ := newTestHost(t, "c", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Host().Connect(ctx, addrInfo(t, a)); err != nil {
		t.Fatal(err)
	}
	res := <-ping.Ping(ctx, b.Host(), a.ID())
	if res.Error != nil {
		t.Fatalf("ping: %v", res.Error)
	}
	waitFor(t, 5*time.Second, "identify to record the agent version", func() bool {
		v, err := b.Host().Peerstore().Get(a.ID(), "AgentVersion")
		return err == nil && v == "hydra/test"
	})
	protos, err := b.Host().Peerstore().GetProtocols(a.ID())
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, p := range protos {
		s = append(s, string(p))
	}
	joined := strings.Join(s, " ")
	for _, want := range []string{ping.ID, "/ipfs/id/1.0.0", string(memberProtocol("c"))} {
		if !strings.Contains(joined, want) {
			t.Errorf("identify protocols %v lack %s", s, want)
		}
	}
}

func TestHost_QUICAndTCPBothWork(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	for _, proto := range []int{multiaddr.P_TCP, multiaddr.P_QUIC_V1} {
		b, _ := newTestHost(t, "c", nil)
		ai := addrInfo(t, a)
		var only []multiaddr.Multiaddr
		for _, m := range ai.Addrs {
			if _, err := m.ValueForProtocol(proto); err == nil {
				only = append(only, m)
			}
		}
		if len(only) == 0 {
			t.Fatalf("no address with protocol %d in %v", proto, ai.Addrs)
		}
		ai.Addrs = only
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.Host().Connect(ctx, ai)
		cancel()
		if err != nil {
			t.Fatalf("connect over %v: %v", only, err)
		}
		_ = b.Close()
	}
}

func TestHost_Protect(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	b, _ := newTestHost(t, "c", nil)
	a.Protect(b.ID())
	if !a.Host().ConnManager().IsProtected(b.ID(), ProtectTag) {
		t.Fatal("not protected after Protect")
	}
	a.Unprotect(b.ID())
	if a.Host().ConnManager().IsProtected(b.ID(), ProtectTag) {
		t.Fatal("still protected after Unprotect")
	}
}

func TestHost_ResourceLimitsForHydraProtocols(t *testing.T) {
	h, _ := newTestHost(t, "c", nil)
	for _, l := range hydraProtocolLimits {
		err := h.Host().Network().ResourceManager().ViewProtocol(l.id, func(s network.ProtocolScope) error {
			ls, ok := s.(rcmgr.ResourceScopeLimiter)
			if !ok {
				return fmt.Errorf("scope %T has no Limit", s)
			}
			if got := ls.Limit().GetStreamTotalLimit(); got < l.total.Streams {
				return fmt.Errorf("stream limit %d, want >= %d", got, l.total.Streams)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", l.id, err)
		}
	}
}

func TestHost_CloseIsIdempotentAndStopsEverything(t *testing.T) {
	h, _ := newTestHost(t, "c", nil)
	if _, err := h.Topic("x"); err != nil {
		t.Fatal(err)
	}
	if err := h.StartDiscovery(context.Background(), DiscoveryConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := h.StartDiscovery(context.Background(), DiscoveryConfig{}); !errors.Is(err, ErrDiscoveryStarted) {
		t.Fatalf("second StartDiscovery: %v, want ErrDiscoveryStarted", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Topic("y"); err == nil {
		t.Fatal("Topic after Close succeeded")
	}
}

func TestNew_DefaultListenAddrs(t *testing.T) {
	h, err := New(context.Background(), Config{Key: testKey(t), Cluster: "c"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var tcp, quic bool
	for _, a := range h.Host().Network().ListenAddresses() {
		_, errT := a.ValueForProtocol(multiaddr.P_TCP)
		_, errQ := a.ValueForProtocol(multiaddr.P_QUIC_V1)
		tcp, quic = tcp || errT == nil, quic || errQ == nil
	}
	if !tcp || !quic {
		t.Fatalf("listening on %v: want TCP and QUIC", h.Host().Network().ListenAddresses())
	}
	// The same fixed port on both families and both transports.
	port := freePorts(t)[0]
	p, _ := port.ValueForProtocol(multiaddr.P_TCP)
	var n int
	fmt.Sscan(p, &n)
	h2, err := New(context.Background(), Config{Key: testKey(t), Cluster: "c", Listen: DefaultListenAddrs(n)})
	if err != nil {
		t.Fatalf("DefaultListenAddrs(%d): %v", n, err)
	}
	defer h2.Close()
	if got := len(h2.Host().Network().ListenAddresses()); got < 2 {
		t.Fatalf("listening on %d addresses", got)
	}
}

// A well-formed address that cannot be listened on whatever the moment (no transport takes it, an
// IP this machine lacks) is ErrBadListenAddr, which the node reports as a configuration error.
func TestNew_BadListenAddr(t *testing.T) {
	for _, addr := range []string{"/ip4/127.0.0.1/udp/0", "/ip4/192.0.2.1/tcp/0", "/ip4/192.0.2.1/udp/0/quic-v1"} {
		_, err := New(context.Background(), Config{
			Key:     testKey(t),
			Listen:  []multiaddr.Multiaddr{multiaddr.StringCast(addr)},
			Cluster: "c",
		})
		if !errors.Is(err, ErrBadListenAddr) {
			t.Errorf("listen on %s: err = %v, want ErrBadListenAddr", addr, err)
		}
	}
}
