package localport

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeDistinctAndNotEphemeral: the ports handed out are never the same
// twice and never ones the kernel hands to ":0".
func TestFreeDistinctAndNotEphemeral(t *testing.T) {
	lo, hi := Range()
	seen := map[int]bool{}
	for range 300 {
		p, err := Free()
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
	if elo, ehi := Ephemeral(); lo <= ehi && elo < hi {
		return // the kernel's range covers nearly everything: Free shares it
	}
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= lo && p < hi {
			t.Fatalf("the kernel's port %d lies in the range [%d, %d)", p, lo, hi)
		}
	}
}

// TestFreeSkipsPortsInUse: a port something listens on is not handed out.
func TestFreeSkipsPortsInUse(t *testing.T) {
	p, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	state.Lock()
	state.next = p // hand p out again next, had it been free
	state.Unlock()
	l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	q, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	if q == p {
		t.Fatalf("port %d handed out while in use", p)
	}
}
