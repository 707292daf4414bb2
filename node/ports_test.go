package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports for the nodes a system test starts. A node binds its port only
// once its process runs, so the test picks the number first and must not
// be handed one that something else takes in between. A port asked of the
// kernel (":0") comes from its ephemeral range, the one every outgoing
// connection and every other test package's listener on ":0" draws from,
// and the kernel may hand the same number out again at once (a CI run
// failed so: a node's p2p and HTTP ports were the same number). So ports
// come from outside the ephemeral range, each handed out once per test
// process, starting at a place that depends on the process ID.

var ports struct {
	sync.Mutex
	lo, hi int // the range handed out from, [lo, hi)
	next   int // the next candidate; 0 before the first call
}

// freePortForTest returns a TCP port on 127.0.0.1 that is free now, lies
// outside the kernel's ephemeral range, and was not returned before in
// this process.
func freePortForTest() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.next == 0 {
		ports.lo, ports.hi = testPortRange()
		ports.next = ports.lo + os.Getpid()%(ports.hi-ports.lo)
	}
	for range ports.hi - ports.lo {
		p := ports.next
		ports.next++
		if ports.next == ports.hi {
			ports.next = ports.lo
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // in use by something else
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("no free port outside the ephemeral range")
}

// testPortRange is the larger of the two ranges of unprivileged ports on
// either side of the kernel's ephemeral range (Linux's default is
// 32768–60999, leaving 10000–32767 below it).
func testPortRange() (lo, hi int) {
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
	below := elo - 10000
	above := 65536 - (ehi + 1)
	switch {
	case max(below, above) < 1000:
		return 20000, 30000 // the ephemeral range covers almost everything: share it
	case below >= above:
		return 10000, elo
	}
	return ehi + 1, 65536
}

// TestFreePortsDistinctAndNotEphemeral: the ports a system test is given
// are never the same twice and never ones the kernel hands to ":0".
func TestFreePortsDistinctAndNotEphemeral(t *testing.T) {
	lo, hi := testPortRange()
	seen := map[int]bool{}
	for range 300 {
		p, err := freePortForTest()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if p := l.Addr().(*net.TCPAddr).Port; p >= lo && p < hi {
		t.Fatalf("the kernel's port %d lies in the test range [%d, %d)", p, lo, hi)
	}
}
