package main

import (
	"testing"

	"github.com/hydra-compute/hydra/internal/localport"
)

// TestFreePortsDistinctOutsideEphemeral: what scripts/ui-test relies on, N ports all different
// and outside the kernel's ephemeral range; N is validated.
func TestFreePortsDistinctOutsideEphemeral(t *testing.T) {
	ports, err := freePorts("6")
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := localport.Range()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p < lo || p >= hi {
			t.Fatalf("ports %v: %d repeated or outside [%d, %d)", ports, p, lo, hi)
		}
		seen[p] = true
	}
	if len(ports) != 6 {
		t.Fatalf("%d ports, want 6", len(ports))
	}
	for _, bad := range []string{"", "0", "-1", "x", "1001"} {
		if _, err := freePorts(bad); err == nil {
			t.Errorf("N %q accepted", bad)
		}
	}
}
