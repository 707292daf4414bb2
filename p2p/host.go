package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	coreconnmgr "github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// ErrAddrInUse is wrapped by New when a listen address's port is taken,
// typically by another hydra on the same machine. The node reports it as a
// configuration error naming the port (exit code 78, EX_CONFIG, as every
// usage or configuration error), which a service manager does not restart.
var ErrAddrInUse = errors.New("address already in use")

// ErrBadListenAddr is wrapped by New when a listen address cannot be
// listened on whatever the moment: no transport takes it (a /udp address
// without /quic-v1, say), the IP is not this machine's, or the port is
// privileged. Like ErrAddrInUse it is the configuration's fault, and the
// node reports it as such (exit code 78), as it does for --http.
var ErrBadListenAddr = errors.New("cannot listen on this address")

// ProtectTag is the connection-manager tag Protect uses. Raft peers must
// stay connected whatever the connection count: trimming a voter's
// connection costs a heartbeat and can start an election.
const ProtectTag = "hydra-raft"

// Connection-manager watermarks. A LAN cluster rarely has more than a few
// dozen nodes; the rest of the head-room is for DHT peers and transient
// dials. Protected (raft) peers are never trimmed.
const (
	connLow   = 128
	connHigh  = 256
	connGrace = time.Minute
)

// Config configures New.
type Config struct {
	// Key is the node's identity (LoadOrCreateIdentity). Required: a random
	// key per run would make the node a stranger to its own cluster.
	Key crypto.PrivKey
	// Listen lists the addresses to listen on, TCP and QUIC, port 0 allowed.
	// Each one must succeed (a half-listening node is harder to debug than
	// one that refuses to start), except the IPv6 wildcard, skipped with a
	// warning where IPv6 is unavailable. Empty means DefaultListenAddrs(0).
	Listen []multiaddr.Multiaddr
	// Cluster is the cluster name. The mDNS service name, the gossip topic
	// prefix and the DHT rendezvous derive from it, so clusters sharing a
	// LAN ignore each other.
	Cluster string
	// AgentVersion is what identify reports, "hydra/<version>", so an
	// operator (or a peer) can tell which build a node runs.
	AgentVersion string
	// Topics names the gossip topics the node will join (as Host.Topic takes
	// them): peers' subscriptions to them are kept from the start, before the
	// node joins them, whatever else peers subscribe to (topicFilter's spare
	// places for other names are few and never freed).
	Topics []string
	// Logger receives the package's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultListenAddrs returns TCP and QUIC listen addresses on every IPv4
// and IPv6 interface (0.0.0.0 and ::) at port (0 for a random one).
// Listening on the wildcard rather than on one chosen interface is
// deliberate: picking "the" interface is how mesh tools end up on docker0
// or a VPN link instead of the LAN (docs/design.md §6).
func DefaultListenAddrs(port int) []multiaddr.Multiaddr {
	var out []multiaddr.Multiaddr
	for _, s := range []string{
		"/ip4/0.0.0.0/tcp/%d", "/ip4/0.0.0.0/udp/%d/quic-v1",
		"/ip6/::/tcp/%d", "/ip6/::/udp/%d/quic-v1",
	} {
		out = append(out, multiaddr.StringCast(fmt.Sprintf(s, port)))
	}
	return out
}

// Host is a Hydra node's libp2p host plus what Hydra layers on it:
// discovery, gossip and connection protection. It is safe for concurrent
// use. Close it to stop everything it started.
type Host struct {
	h       host.Host
	cmgr    *connmgr.BasicConnMgr
	cluster string
	log     *slog.Logger

	// ctx is cancelled by Close; every goroutine the Host starts watches it
	// and is counted in wg, so Close returns only when they have all ended.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	gate *gate

	// repairEvery is gossip repair's period (gossipRepairEvery; tests set
	// it before the first Topic). repairSoon carries the peers a probe cut
	// off from gossip, for the repair to look at at once (gossiprepair.go).
	repairEvery time.Duration
	repairSoon  chan peer.ID

	mu         sync.Mutex
	closed     bool
	ps         *pubsub.PubSub
	subFilter  *topicFilter // the router's subscription filter
	topics     map[string]*Topic
	discovery  bool // StartDiscovery was called
	closeOnce  sync.Once
	closeError error
}

// New builds and starts a libp2p host for a Hydra node: TCP and QUIC,
// Noise and TLS, yamux, identify (with cfg.AgentVersion) and the standard
// ping protocol, so any libp2p implementation can dial, ping and identify
// it. It also installs a connection manager and a resource manager with
// explicit limits for Hydra's protocols (see limits.go).
//
// Reuseport is disabled on TCP so that a second process on the same port
// fails with an error wrapping ErrAddrInUse instead of silently sharing the
// port with the first (QUIC's listener refuses a taken port by itself).
// QUIC keeps go-libp2p's default connection manager: a custom one
// (libp2p.QUICReuse) loses the resource-manager accounting of inbound QUIC
// connections and is never closed, leaking its UDP sockets past Close.
//
// ctx bounds only the construction; the host lives until Close.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Key == nil {
		return nil, errors.New("p2p: Config.Key is required (LoadOrCreateIdentity)")
	}
	if cfg.Cluster == "" {
		return nil, errors.New("p2p: Config.Cluster is required")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = DefaultListenAddrs(0)
	}
	g := &gate{}
	rcm, err := newResourceManager(cfg.Cluster, g)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	low, high := connLow, connHigh
	if l, ok := rcm.(coreconnmgr.GetConnLimiter); ok && l.GetConnLimit() < high {
		// A small board's scaled system limit is below our high watermark,
		// which libp2p rejects: trim within what the system allows.
		high = l.GetConnLimit()
		low = high / 2
	}
	cmgr, err := connmgr.NewConnManager(low, high, connmgr.WithGracePeriod(connGrace))
	if err != nil {
		rcm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	h, err := libp2p.New(
		libp2p.Identity(cfg.Key),
		// Listen below, one address at a time, to report each failure.
		libp2p.NoListenAddrs,
		libp2p.DisableRelay(),
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.UserAgent(cfg.AgentVersion),
		libp2p.Ping(true),
		libp2p.ConnectionManager(cmgr),
		libp2p.ResourceManager(rcm),
		libp2p.ConnectionGater(g),
	)
	if err != nil {
		// libp2p closes the managers it was given when construction fails.
		return nil, fmt.Errorf("p2p: new host: %w", err)
	}
	inbound := func() []peer.ID { return inboundPeers(h.Network()) }
	g.peers.Store(&inbound)
	// Identify tells every peer that this node belongs to cfg.Cluster (see
	// memberProtocol); nothing is ever sent on it.
	h.SetStreamHandler(memberProtocol(cfg.Cluster), func(s network.Stream) { _ = s.Reset() })
	if err := listenAll(h, listen, log); err != nil {
		_ = h.Close()
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.Background())
	hh := &Host{
		h:         h,
		cmgr:      cmgr,
		cluster:   cfg.Cluster,
		log:       log,
		ctx:       hctx,
		cancel:    cancel,
		topics:    make(map[string]*Topic),
		subFilter: newTopicFilter(cfg.Cluster, cfg.Topics...),
		gate:      g,

		repairEvery: gossipRepairEvery,
		repairSoon:  make(chan peer.ID, 16),
	}
	h.Network().Notify(movedWatch{hh})
	hh.goTracked(func() {
		if err := watchAddrs(hctx, hh.addrGone); err != nil {
			log.Warn("not watching this machine's addresses: a change of address is noticed only when its connections time out", "err", err)
		}
	})
	log.Info("p2p host started", "peer", h.ID(), "addrs", hh.Addrs(), "agent", cfg.AgentVersion)
	return hh, nil
}

// listenAll listens on every address and fails on the first error, except
// that the IPv6 wildcard (::) may fail for any reason but a taken port: a
// machine with IPv6 disabled still runs Hydra over IPv4.
func listenAll(h host.Host, addrs []multiaddr.Multiaddr, log *slog.Logger) error {
	sw, ok := h.Network().(*swarm.Swarm)
	if !ok {
		return fmt.Errorf("p2p: unexpected network type %T", h.Network())
	}
	listened := 0
	for _, a := range addrs {
		err := sw.AddListenAddr(a)
		if err == nil {
			listened++
			continue
		}
		if isAddrInUse(err) {
			return fmt.Errorf("p2p: listen on %s: %w (%v)", a, ErrAddrInUse, err)
		}
		if isIP6Wildcard(a) {
			log.Warn("not listening on IPv6", "addr", a, "err", err)
			continue
		}
		if errors.Is(err, swarm.ErrNoTransport) {
			return fmt.Errorf("p2p: listen on %s: %w (%v: want /tcp/PORT or /udp/PORT/quic-v1)", a, ErrBadListenAddr, err)
		}
		if isBadListenAddr(err) {
			return fmt.Errorf("p2p: listen on %s: %w (%v)", a, ErrBadListenAddr, err)
		}
		return fmt.Errorf("p2p: listen on %s: %w", a, err)
	}
	if listened == 0 {
		return fmt.Errorf("p2p: no listen address succeeded: %w", ErrBadListenAddr)
	}
	return nil
}

// isBadListenAddr reports whether err says the address itself cannot be
// listened on: an IP this machine does not have, or a privileged port.
func isBadListenAddr(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "cannot assign requested address")
}

// isAddrInUse reports whether err says a port is taken. The text check
// covers transports that flatten the syscall error into a string.
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func isIP6Wildcard(a multiaddr.Multiaddr) bool {
	ip, err := a.ValueForProtocol(multiaddr.P_IP6)
	return err == nil && net.ParseIP(ip).IsUnspecified()
}

// Host returns the underlying libp2p host, for what p2p does not wrap:
// consensus's stream layer (gostream), Call and Serve.
func (h *Host) Host() host.Host { return h.h }

// ID returns the node's peer ID, which is also its raft server ID.
func (h *Host) ID() peer.ID { return h.h.ID() }

// Addrs returns the node's addresses, each ending in /p2p/<id> so any of
// them can be given to another node's --join. Wildcard listen addresses are
// expanded to every interface; loopback addresses come last, since they
// only help a node on the same machine.
func (h *Host) Addrs() []multiaddr.Multiaddr {
	addrs := slices.Clone(h.h.Addrs())
	slices.SortStableFunc(addrs, func(a, b multiaddr.Multiaddr) int {
		la, lb := manet.IsIPLoopback(a), manet.IsIPLoopback(b)
		switch {
		case la == lb:
			return 0
		case lb:
			return -1
		default:
			return 1
		}
	})
	full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.h.ID(), Addrs: addrs})
	if err != nil { // only for an empty ID, which a running host never has
		return nil
	}
	return full
}

// Protect keeps p's connections open whatever the connection manager's
// watermarks, under ProtectTag. Consensus protects every raft server.
func (h *Host) Protect(p peer.ID) { h.cmgr.Protect(p, ProtectTag) }

// Unprotect undoes Protect, for a server that left the raft configuration.
func (h *Host) Unprotect(p peer.ID) { h.cmgr.Unprotect(p, ProtectTag) }

// Close stops discovery and gossip, waits for every goroutine the Host
// started, then closes the libp2p host (and with it every connection and
// stream). It is safe to call more than once.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.cancel()
		h.wg.Wait()
		h.closeError = h.h.Close()
	})
	return h.closeError
}

// goTracked runs f in a goroutine counted in h.wg, unless the host is
// closing (then f does not run and false is returned).
func (h *Host) goTracked(f func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
	return true
}

// memberProtocol is a protocol ID that only identifies: a node registers
// the one of its cluster, identify lists it, and a peer seeing it in the
// list knows the remote node is of its cluster without a round trip. This
// is how a node that was joined (dialled) learns that the dialler is a
// cluster peer and reports it through OnPeer.
func memberProtocol(cluster string) protocol.ID {
	return protocol.ID("/hydra/member/" + clusterHash(cluster) + "/1.0.0")
}
