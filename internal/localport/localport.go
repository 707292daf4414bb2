// Package localport hands out loopback port numbers for processes that are
// started later and bind them themselves: the demo's nodes, the system
// tests' nodes, the benchmark clusters.
//
// A port asked of the kernel (":0") and closed again comes from its
// ephemeral range, the one every outgoing connection and every other
// program's ":0" listener draws from, and the kernel may hand the same
// number out again at once: two nodes (or one node's p2p and HTTP
// listeners) given the same number collide, and anything on the machine
// may take the number before the node binds it. So the ports come from
// outside the ephemeral range, each handed out once per process, and, where
// the system has POSIX record locks, claimed for the life of the process in
// a lock file shared by every program that uses this package (claim): the
// test binaries of several packages run at once, each starting nodes
// seconds after it picked their ports, and a port one of them picked but
// has not bound yet looks free to the others.
package localport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var state struct {
	sync.Mutex
	lo, hi int // the range handed out from, [lo, hi)
	next   int // the next candidate; 0 before the first call
}

// Free returns a port number that is free on 127.0.0.1 for both TCP and
// UDP now (a libp2p node may listen on QUIC too), lies outside the
// kernel's ephemeral range, was not returned before in this process, and
// is not claimed by another process that uses this package.
func Free() (int, error) {
	state.Lock()
	defer state.Unlock()
	if state.next == 0 {
		state.lo, state.hi = Range()
		// A scrambled start: processes started together (close PIDs) begin far apart.
		state.next = state.lo + int(uint64(os.Getpid())*2654435761%uint64(state.hi-state.lo))
	}
	for range state.hi - state.lo {
		p := state.next
		state.next++
		if state.next == state.hi {
			state.next = state.lo
		}
		if free(p) && claim(p) {
			return p, nil
		}
	}
	return 0, errors.New("localport: no free port outside the ephemeral range")
}

func free(p int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", p)
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Range is the range [lo, hi) that Free hands ports out of: the larger of
// the two ranges of unprivileged ports on either side of the kernel's
// ephemeral range (Linux's default is 32768–60999, leaving 10000–32767
// below it). Where the ephemeral range covers nearly everything, Free
// shares it and only the once-per-process rule holds.
func Range() (lo, hi int) {
	elo, ehi := Ephemeral()
	below := elo - 10000
	above := 65536 - (ehi + 1)
	switch {
	case max(below, above) < 1000:
		return 20000, 30000
	case below >= above:
		return 10000, elo
	}
	return ehi + 1, 65536
}

// Ephemeral returns the kernel's ephemeral port range, both ends included
// (Linux's default where it cannot be read).
func Ephemeral() (lo, hi int) {
	elo, ehi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			a, errA := strconv.Atoi(f[0])
			z, errZ := strconv.Atoi(f[1])
			if errA == nil && errZ == nil && 1024 <= a && a <= z && z <= 65535 {
				elo, ehi = a, z
			}
		}
	}
	return elo, ehi
}
