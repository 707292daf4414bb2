package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// DiscoveryConfig says how a node finds the other nodes of its cluster.
// Any combination of mechanisms may be on; a peer found by several is
// reported by each.
type DiscoveryConfig struct {
	// MDNS announces and browses the cluster's mDNS service on the LAN:
	// zero configuration where multicast works.
	MDNS bool
	// Join lists peers (from --join) to dial and to keep redialling, with
	// capped exponential backoff, whenever the node is not connected to
	// them, for as long as discovery runs: a node started before its join
	// peer, or whose join peer restarts, still gets (back) in.
	Join []peer.AddrInfo
	// DHT runs a Kademlia DHT (protocol prefix /hydra, server mode)
	// bootstrapped from Join, and periodically advertises and looks up a
	// rendezvous derived from the cluster name, so nodes that share only a
	// join peer (beyond one LAN) find each other.
	DHT bool
	// OnPeer is called for every peer of the cluster found and connected,
	// by any mechanism, and for every peer that connects to this node and
	// says (through identify) that it is of the same cluster. It is called
	// often, possibly concurrently and repeatedly for the same peer, so it
	// must be idempotent, safe for concurrent use and quick (hand heavy
	// work to a goroutine). It is never called after discovery stops.
	OnPeer func(peer.AddrInfo)

	// Tuning knobs, unexported: production uses the defaults; tests
	// shorten them. Zero means the default.
	joinBackoffMin  time.Duration // first retry delay for a join peer
	joinBackoffMax  time.Duration // cap of the retry delay
	rendezvousMin   time.Duration // first DHT rendezvous interval
	rendezvousMax   time.Duration // steady-state DHT rendezvous interval
	readvertise     time.Duration // how often the rendezvous is re-advertised
	mdnsDialDelay   time.Duration // head start given to the lower peer ID
	mdnsRetryMin    time.Duration // first retry of an mDNS service that failed to start
	mdnsRetryMax    time.Duration // cap of the mDNS retry delay
	watchdogRecheck time.Duration // join peers are rechecked at least this often
	providerKeys    int           // DHT keys held other than the cluster's rendezvous
	providersPerKey int           // DHT providers held per key
}

// Defaults of DiscoveryConfig's tuning knobs.
const (
	defaultJoinBackoffMin  = 500 * time.Millisecond
	defaultJoinBackoffMax  = 30 * time.Second
	defaultRendezvousMin   = 2 * time.Second
	defaultRendezvousMax   = time.Minute
	defaultReadvertise     = 10 * time.Minute
	defaultMDNSDialDelay   = time.Second
	defaultMDNSRetryMin    = time.Second
	defaultMDNSRetryMax    = 5 * time.Minute
	defaultWatchdogRecheck = 30 * time.Second
	// dialTimeout bounds one connection attempt, so a black-holed address
	// cannot stall a join loop.
	dialTimeout = 15 * time.Second
	// maxFoundDials bounds the peers found by mDNS or the DHT that are
	// being dialled at once. An mDNS response is unauthenticated and may
	// list any number of peer IDs, with addresses of the sender's choosing:
	// one goroutine and one dial each, for up to dialTimeout, would let a
	// stream of them pile up without bound. The bound is well above a LAN
	// cluster's size, since a peer dropped for it is not reported by mDNS
	// again until its record expires (zeroconf's TTL, about an hour); it
	// still connects by dialling this node, or through the announcements
	// of the peers it is connected to, and the DHT looks up again soon.
	maxFoundDials = 64
)

func (c *DiscoveryConfig) applyDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.joinBackoffMin, defaultJoinBackoffMin)
	def(&c.joinBackoffMax, defaultJoinBackoffMax)
	def(&c.rendezvousMin, defaultRendezvousMin)
	def(&c.rendezvousMax, defaultRendezvousMax)
	def(&c.readvertise, defaultReadvertise)
	def(&c.mdnsDialDelay, defaultMDNSDialDelay)
	def(&c.mdnsRetryMin, defaultMDNSRetryMin)
	def(&c.mdnsRetryMax, defaultMDNSRetryMax)
	def(&c.watchdogRecheck, defaultWatchdogRecheck)
	if c.providerKeys <= 0 {
		c.providerKeys = defaultForeignKeys
	}
	if c.providersPerKey <= 0 {
		c.providersPerKey = defaultProvidersPerKey
	}
}

// source names the mechanism that found a peer, for logs.
type source string

const (
	sourceMDNS     source = "mdns"
	sourceJoin     source = "join"
	sourceDHT      source = "dht"
	sourceIdentify source = "identify"
)

// discovery is one run of StartDiscovery. Its goroutines are counted in wg;
// the Host waits for them through the one tracked goroutine that waits wg.
type discovery struct {
	h   *Host
	cfg DiscoveryConfig
	log *slog.Logger
	ctx context.Context

	mu       sync.Mutex
	stopped  bool
	wg       sync.WaitGroup
	inflight map[peer.ID]bool // peers being dialled by found

	joinWake map[peer.ID]chan struct{} // poked when a join peer disconnects

	providers *providerStore // the DHT's provider records, if DHT is on
}

// ErrDiscoveryStarted is returned by a second StartDiscovery on one Host:
// two runs would dial and report every peer twice.
var ErrDiscoveryStarted = errors.New("p2p: discovery already started")

// StartDiscovery starts the mechanisms cfg enables and returns once they
// are running; they run in the background until ctx is cancelled or the
// Host is closed (Close waits for them). It fails if the Host is closed,
// if discovery was already started, or if the DHT cannot be created. An
// mDNS service that cannot start (no multicast-capable interface) is not an
// error: it is logged and retried with a backoff (1 s doubling to 5 min)
// and when the host's addresses change.
func (h *Host) StartDiscovery(ctx context.Context, cfg DiscoveryConfig) error {
	cfg.applyDefaults()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errors.New("p2p: host closed")
	}
	if h.discovery {
		h.mu.Unlock()
		return ErrDiscoveryStarted
	}
	h.discovery = true
	h.mu.Unlock()

	dctx, cancel := context.WithCancel(ctx)
	stopAfter := context.AfterFunc(h.ctx, cancel)
	d := &discovery{
		h:        h,
		cfg:      cfg,
		log:      h.log.With("component", "discovery"),
		ctx:      dctx,
		inflight: make(map[peer.ID]bool),
		joinWake: make(map[peer.ID]chan struct{}),
	}
	var cleanups []func()
	// shutdown runs once discovery must stop: no new goroutines, wait for
	// the running ones, then release what start acquired.
	shutdown := func() {
		cancel()
		d.mu.Lock()
		d.stopped = true
		d.mu.Unlock()
		d.wg.Wait()
		for _, f := range slices.Backward(cleanups) {
			f()
		}
		stopAfter()
	}
	cleanups, err := d.start()
	if err == nil && !h.goTracked(func() { <-dctx.Done(); shutdown() }) {
		err = errors.New("p2p: host closed")
	}
	if err != nil {
		shutdown()
		return err
	}
	return nil
}

// start subscribes to the events discovery needs and starts each enabled
// mechanism. It returns the cleanups to run, in reverse order, once every
// goroutine has ended.
func (d *discovery) start() (cleanups []func(), err error) {
	bus := d.h.h.EventBus()
	idSub, err := bus.Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return nil, fmt.Errorf("p2p: subscribe to identify events: %w", err)
	}
	cleanups = append(cleanups, func() { _ = idSub.Close() })
	connSub, err := bus.Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return cleanups, fmt.Errorf("p2p: subscribe to connection events: %w", err)
	}
	cleanups = append(cleanups, func() { _ = connSub.Close() })

	// The DHT comes first so that its protocol is registered before the
	// join peers connect and identify each other.
	if d.cfg.DHT {
		stop, err := d.startDHT()
		if err != nil {
			return cleanups, err
		}
		cleanups = append(cleanups, stop)
	}
	// joinWake is complete before any goroutine reads it, and read-only
	// after: one loop per join peer, even if it is listed twice.
	// A peer listed twice (say once per address) gets one loop, with all
	// its addresses.
	var joins []peer.AddrInfo
	for _, ai := range d.cfg.Join {
		if ai.ID == d.h.ID() || ai.ID == "" {
			continue
		}
		if i := slices.IndexFunc(joins, func(j peer.AddrInfo) bool { return j.ID == ai.ID }); i >= 0 {
			joins[i].Addrs = append(slices.Clone(joins[i].Addrs), ai.Addrs...)
			continue
		}
		d.joinWake[ai.ID] = make(chan struct{}, 1)
		joins = append(joins, ai)
	}
	d.track(func() { d.watchIdentify(idSub) })
	d.track(func() { d.watchConnectedness(connSub) })
	for _, ai := range joins {
		wake := d.joinWake[ai.ID]
		d.track(func() { d.joinLoop(ai, wake) })
	}
	if d.cfg.MDNS {
		m := &mdnsRunner{d: d}
		d.track(m.run)
	}
	// Peers that connected and identified before discovery started; in a
	// goroutine, so that OnPeer never runs inside StartDiscovery.
	d.track(func() {
		for _, p := range d.h.h.Network().Peers() {
			d.checkMember(p)
		}
	})
	return cleanups, nil
}

// track runs f in a goroutine counted in d.wg unless discovery has
// stopped; it reports whether f was started.
func (d *discovery) track(f func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return false
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
	return true
}

// report hands a connected peer to OnPeer.
func (d *discovery) report(p peer.ID, src source) {
	if d.ctx.Err() != nil || d.cfg.OnPeer == nil {
		return
	}
	ai := d.h.h.Peerstore().PeerInfo(p)
	d.log.Debug("peer found", "peer", p, "source", src)
	d.cfg.OnPeer(ai)
}

// found handles a peer seen by mDNS or the DHT: connect (once at a time per
// peer, at most maxFoundDials peers at a time) and report. It returns at once; the work runs in a tracked
// goroutine.
func (d *discovery) found(ai peer.AddrInfo, src source) {
	if ai.ID == d.h.ID() || ai.ID == "" {
		return
	}
	d.mu.Lock()
	if d.stopped || d.inflight[ai.ID] {
		d.mu.Unlock()
		return
	}
	if len(d.inflight) >= maxFoundDials {
		d.mu.Unlock()
		d.log.Debug("too many found peers being dialled; dropped", "peer", ai.ID, "source", src)
		return
	}
	d.inflight[ai.ID] = true
	d.mu.Unlock()
	started := d.track(func() {
		defer func() {
			d.mu.Lock()
			delete(d.inflight, ai.ID)
			d.mu.Unlock()
		}()
		if d.connected(ai.ID) {
			d.report(ai.ID, src)
			return
		}
		if src == sourceMDNS && d.h.ID() > ai.ID {
			// Both sides found each other at about the same time; let the
			// lower peer ID dial first so they do not open two connections.
			if !d.sleep(d.cfg.mdnsDialDelay) {
				return
			}
		}
		if err := d.dial(ai); err != nil {
			d.log.Debug("dial failed", "peer", ai.ID, "source", src, "err", err)
			return
		}
		d.report(ai.ID, src)
	})
	if !started {
		d.mu.Lock()
		delete(d.inflight, ai.ID)
		d.mu.Unlock()
	}
}

func (d *discovery) connected(p peer.ID) bool {
	return d.h.h.Network().Connectedness(p) == network.Connected
}

// dial connects to ai, first clearing the swarm's dial backoff for it: a
// peer that was just (re)discovered is likely reachable again, and the
// backoff from its last failure would otherwise refuse the dial.
func (d *discovery) dial(ai peer.AddrInfo) error {
	if d.connected(ai.ID) {
		return nil
	}
	if sw, ok := d.h.h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(ai.ID)
	}
	ctx, cancel := context.WithTimeout(d.ctx, dialTimeout)
	defer cancel()
	return d.h.h.Connect(ctx, ai)
}

// sleep waits for dur or until discovery stops; it reports whether
// discovery is still running.
func (d *discovery) sleep(dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.ctx.Done():
		return false
	}
}

// joinLoop keeps the node connected to one --join peer: dial while not
// connected, with exponential backoff (jittered, capped), then wait for a
// disconnect (or a periodic recheck, in case an event was missed) and start
// over with the shortest delay. A connection that ends before it lasted
// joinBackoffMax counts as a failed dial: a join peer that refuses this
// node (an evicted key, the outsider places full) completes the handshake
// and closes the connection right after, so the dial itself succeeds, and
// redialling it at once would loop as fast as the handshakes go. The
// delay starts afresh with a connection, unless the last one was dropped
// that way.
func (d *discovery) joinLoop(ai peer.AddrInfo, wake <-chan struct{}) {
	delay := d.cfg.joinBackoffMin
	dropped := false // the last connection ended before it lasted joinBackoffMax
	// backoff waits the current delay, jittered so that nodes waiting on
	// the same peer spread out, and doubles it; false once discovery stops.
	backoff := func() bool {
		if !d.sleep(delay/2 + rand.N(delay/2+1)) {
			return false
		}
		delay = min(2*delay, d.cfg.joinBackoffMax)
		return true
	}
	for d.ctx.Err() == nil {
		if err := d.dial(ai); err != nil {
			d.log.Debug("join peer unreachable", "peer", ai.ID, "retry_in", delay, "err", err)
			if !backoff() {
				return
			}
			continue
		}
		since := time.Now()
		if !dropped {
			delay = d.cfg.joinBackoffMin
		}
		d.report(ai.ID, sourceJoin)
		for d.connected(ai.ID) {
			t := time.NewTimer(d.cfg.watchdogRecheck)
			select {
			case <-d.ctx.Done():
				t.Stop()
				return
			case <-wake:
			case <-t.C:
			}
			t.Stop()
		}
		if dropped = time.Since(since) < d.cfg.joinBackoffMax; dropped {
			d.log.Info("join peer closed the connection soon after it opened (refused?); redialling after a backoff", "peer", ai.ID, "retry_in", delay)
			if !backoff() {
				return
			}
			continue
		}
		delay = d.cfg.joinBackoffMin
		d.log.Info("join peer disconnected; redialling", "peer", ai.ID)
	}
}

// watchConnectedness wakes the join loop of a join peer that disconnects.
func (d *discovery) watchConnectedness(sub event.Subscription) {
	d.each(sub, func(e any) {
		ev := e.(event.EvtPeerConnectednessChanged)
		if ev.Connectedness == network.Connected {
			return
		}
		if wake := d.joinWake[ev.Peer]; wake != nil { // read-only after start
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
}

// watchIdentify reports peers that identify as members of this cluster,
// whichever side dialled: this is how a node that others --join learns of
// them.
func (d *discovery) watchIdentify(sub event.Subscription) {
	member := memberProtocol(d.h.cluster)
	d.each(sub, func(e any) {
		ev := e.(event.EvtPeerIdentificationCompleted)
		if slices.Contains(ev.Protocols, member) && d.connected(ev.Peer) {
			d.report(ev.Peer, sourceIdentify)
		}
	})
}

// each calls fn with every event of sub, one at a time, until discovery
// stops or sub is closed.
func (d *discovery) each(sub event.Subscription, fn func(e any)) {
	for {
		select {
		case <-d.ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			fn(e)
		}
	}
}

// checkMember reports p if the peerstore says it is of this cluster.
func (d *discovery) checkMember(p peer.ID) {
	ok, err := d.h.h.Peerstore().SupportsProtocols(p, memberProtocol(d.h.cluster))
	if err == nil && len(ok) > 0 && d.connected(p) {
		d.report(p, sourceIdentify)
	}
}
