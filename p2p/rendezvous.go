package p2p

import (
	"context"
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	corediscovery "github.com/libp2p/go-libp2p/core/discovery"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	dutil "github.com/libp2p/go-libp2p/p2p/discovery/util"
)

// rendezvousNamespace is the DHT key a cluster's nodes advertise and look
// up. The DHT is shared by every Hydra cluster reachable from it (one
// protocol prefix, /hydra); the rendezvous keeps each cluster to itself.
func rendezvousNamespace(cluster string) string {
	return ProtocolPrefix + "/rendezvous/1/" + cluster
}

// rendezvousTTL is asked of provider records; the DHT keeps them for a
// fixed time anyway (providerValidity, the same hour), and the node
// re-advertises well before it ends.
const rendezvousTTL = time.Hour

// findTimeout bounds one rendezvous lookup.
const findTimeout = 30 * time.Second

// startDHT starts a Kademlia DHT in server mode (every Hydra node is a
// stable enough peer to hold records for a handful of others) bootstrapped
// from the join peers, and the rendezvous loop. It returns the DHT's close
// function, to run after every goroutine has ended.
//
// Any connected peer, an outsider too, may store records on a DHT server,
// so what it holds is bounded (providers.go): provider records only, for
// few keys, few providers each, for an hour; value records are disabled
// (Hydra uses none, and anyone can make any number of valid public-key
// records).
func (d *discovery) startDHT() (func(), error) {
	store, err := newProviderStore(d.h.cluster, d.cfg.providerKeys, d.cfg.providersPerKey)
	if err != nil {
		return nil, err
	}
	d.providers = store
	kad, err := dht.New(d.h.h,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(ProtocolPrefix),
		dht.BootstrapPeers(d.cfg.Join...),
		dht.DisableValues(),
		dht.Datastore(store),
		dht.ProviderManagerOpts(
			records.ProvideValidity(providerValidity),
			records.CleanupInterval(providerCleanup),
			records.Cache(noProviderCache{}),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("p2p: start DHT: %w", err)
	}
	if err := kad.Bootstrap(d.ctx); err != nil {
		_ = kad.Close()
		return nil, fmt.Errorf("p2p: bootstrap DHT: %w", err)
	}
	rd := drouting.NewRoutingDiscovery(kad)
	d.track(func() { d.rendezvousLoop(kad, rd) })
	return func() { _ = kad.Close() }, nil
}

// rendezvousLoop advertises the cluster's rendezvous and looks it up,
// quickly at first (the routing table fills as join peers connect), then
// every rendezvousMax. It does not use dutil.Advertise: that one waits two
// minutes after a failure (the usual one at start, with an empty routing
// table) and starts an untracked goroutine; this loop retries at its own
// pace and ends with discovery.
func (d *discovery) rendezvousLoop(kad *dht.IpfsDHT, rd *drouting.RoutingDiscovery) {
	ns := rendezvousNamespace(d.h.cluster)
	interval := d.cfg.rendezvousMin
	var advertised time.Time
	for {
		if len(kad.RoutingTable().ListPeers()) > 0 {
			if advertised.IsZero() || time.Since(advertised) >= d.cfg.readvertise {
				if _, err := rd.Advertise(d.ctx, ns, corediscovery.TTL(rendezvousTTL)); err != nil {
					d.log.Debug("rendezvous: advertise failed", "err", err)
				} else {
					advertised = time.Now()
				}
			}
			ctx, cancel := context.WithTimeout(d.ctx, findTimeout)
			peers, err := dutil.FindPeers(ctx, rd, ns)
			cancel()
			if err != nil {
				d.log.Debug("rendezvous: lookup failed", "err", err)
			}
			for _, ai := range peers {
				d.found(ai, sourceDHT)
			}
		}
		if !d.sleep(interval) {
			return
		}
		if !advertised.IsZero() {
			interval = min(2*interval, d.cfg.rendezvousMax)
		}
	}
}
