package p2p

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// clusterHash is 8 hex digits of sha256(cluster): short enough for a DNS-SD
// service name, long enough that two clusters on one LAN do not collide by
// accident.
func clusterHash(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return hex.EncodeToString(sum[:4])
}

// MDNSServiceName returns the DNS-SD service name a cluster's nodes announce
// and browse for on the LAN: "_hydra-" and 8 hex digits of sha256(cluster),
// 15 characters, the most RFC 6763 allows. Because the name differs per
// cluster, nodes of different clusters on one LAN never see each other.
func MDNSServiceName(cluster string) string {
	return "_hydra-" + clusterHash(cluster)
}

// mdnsRunner keeps one go-libp2p mDNS service running for the host and
// restarts it when the host's interface addresses change: go-libp2p builds
// its TXT records once, at Start, so addresses of an interface that comes
// up later (Wi-Fi joining, a cable plugged in) would otherwise never be
// announced (docs/design.md §6). The trigger is the host's
// EvtLocalAddressesUpdated; libp2p caches interface addresses for a minute,
// so a new interface is announced within about a minute. A failed start
// (no multicast-capable interface yet) is logged and retried at the next
// address change.
type mdnsRunner struct {
	d          *discovery
	service    mdns.Service
	advertised []string // sorted interface addresses at the last (re)start
}

// run serves mDNS until the discovery context ends. It owns its service:
// nothing else touches it, so no lock is needed.
func (m *mdnsRunner) run() {
	d := m.d
	sub, err := d.h.h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		d.log.Error("mdns: cannot watch address changes; announcing current addresses only", "err", err)
	}
	m.restart()
	defer m.stop()
	if sub == nil {
		<-d.ctx.Done()
		return
	}
	defer sub.Close()
	for {
		select {
		case <-d.ctx.Done():
			return
		case _, ok := <-sub.Out():
			if !ok {
				return
			}
			if m.service == nil || !slices.Equal(m.interfaceAddrs(), m.advertised) {
				m.restart()
			}
		}
	}
}

// interfaceAddrs is what go-libp2p's mDNS would announce now, as sorted
// strings for comparison.
func (m *mdnsRunner) interfaceAddrs() []string {
	addrs, err := m.d.h.h.Network().InterfaceListenAddresses()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return out
}

func (m *mdnsRunner) restart() {
	m.stop()
	d := m.d
	if d.ctx.Err() != nil {
		return
	}
	m.advertised = m.interfaceAddrs()
	svc := mdns.NewMdnsService(d.h.h, MDNSServiceName(d.h.cluster), mdnsNotifee{d})
	if err := svc.Start(); err != nil {
		_ = svc.Close()
		d.log.Warn("mdns: not announcing on the LAN (retrying when addresses change); use --join if multicast is unavailable", "service", MDNSServiceName(d.h.cluster), "err", err)
		return
	}
	m.service = svc
	d.log.Debug("mdns: announcing", "service", MDNSServiceName(d.h.cluster), "addrs", m.advertised)
}

func (m *mdnsRunner) stop() {
	if m.service != nil {
		_ = m.service.Close()
		m.service = nil
	}
}

// mdnsNotifee adapts discovery to go-libp2p's mdns.Notifee. go-libp2p calls
// HandlePeerFound in a goroutine of its own for every response, again and
// again for the same peer, even after the service is closed: found only
// hands the peer to a tracked goroutine (or drops it once discovery has
// stopped), so the call is cheap and never outlives the host.
type mdnsNotifee struct{ d *discovery }

func (n mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) { n.d.found(ai, sourceMDNS) }
