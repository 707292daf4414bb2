package p2p

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"

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
// so a new interface is announced within about a minute. A start that
// fails (no multicast-capable interface yet, say at boot) is retried with
// a backoff, from mdnsRetryMin doubling to mdnsRetryMax, and at the next
// address change: multicast may come up on an interface whose addresses
// do not change. The first failure is a warning, the retries' failures
// are debug lines.
type mdnsRunner struct {
	d          *discovery
	service    mdns.Service
	advertised []string // sorted interface addresses at the last (re)start
	failing    bool     // the last start failed (and was logged as a warning)
}

// run serves mDNS until the discovery context ends. It owns its service:
// nothing else touches it, so no lock is needed.
func (m *mdnsRunner) run() {
	d := m.d
	sub, err := d.h.h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		d.log.Error("mdns: cannot watch address changes; announcing current addresses only", "err", err)
	}
	defer m.stop()
	var events <-chan any
	if sub != nil {
		defer sub.Close()
		events = sub.Out()
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	delay := d.cfg.mdnsRetryMin
	// start (re)starts the service and, while it fails, keeps one retry
	// scheduled, each delay twice the last up to mdnsRetryMax.
	start := func() {
		retry.Stop()
		if m.restart() {
			delay = d.cfg.mdnsRetryMin
			return
		}
		retry.Reset(delay)
		delay = min(2*delay, d.cfg.mdnsRetryMax)
	}
	start()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-retry.C:
			start()
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if m.service == nil || !slices.Equal(m.interfaceAddrs(), m.advertised) {
				start()
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

// restart stops the service and starts a new one; it reports whether the
// service runs (true too once discovery has stopped: nothing to retry).
func (m *mdnsRunner) restart() bool {
	m.stop()
	d := m.d
	if d.ctx.Err() != nil {
		return true
	}
	m.advertised = m.interfaceAddrs()
	svc := mdns.NewMdnsService(d.h.h, MDNSServiceName(d.h.cluster), mdnsNotifee{d})
	if err := svc.Start(); err != nil {
		_ = svc.Close()
		if m.failing {
			d.log.Debug("mdns: still not announcing on the LAN", "service", MDNSServiceName(d.h.cluster), "err", err)
		} else {
			d.log.Warn("mdns: not announcing on the LAN (retrying with backoff and when addresses change); use --join if multicast is unavailable", "service", MDNSServiceName(d.h.cluster), "err", err)
		}
		m.failing = true
		return false
	}
	if m.failing {
		d.log.Info("mdns: announcing on the LAN after all", "service", MDNSServiceName(d.h.cluster))
	}
	m.failing = false
	m.service = svc
	d.log.Debug("mdns: announcing", "service", MDNSServiceName(d.h.cluster), "addrs", m.advertised)
	return true
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
