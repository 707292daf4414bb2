//go:build !linux

package p2p

import (
	"context"
	"net"
	"time"
)

// addrPollEvery is how often a non-Linux machine's addresses are read: no
// kernel notification is used there.
const addrPollEvery = 5 * time.Second

// watchAddrs calls gone with each address this machine loses, read every
// addrPollEvery, until ctx ends.
func watchAddrs(ctx context.Context, gone func(net.IP)) error {
	have, _ := localIPs()
	t := time.NewTicker(addrPollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now, err := localIPs()
		if err != nil {
			continue // read again next time; nothing is known to be gone
		}
		for s, ip := range have {
			if _, ok := now[s]; !ok {
				gone(ip)
			}
		}
		have = now
	}
}

// localIPs is the machine's interface addresses by their text.
func localIPs() (map[string]net.IP, error) {
	out := map[string]net.IP{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out[n.IP.String()] = n.IP
		}
	}
	return out, nil
}
