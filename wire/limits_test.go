package wire

import "testing"

// TestLimitsNest states the nesting the compile-time checks enforce, with
// the figures, so that a reader sees them and a change that loosens a check
// is caught here too.
func TestLimitsNest(t *testing.T) {
	chain := []struct {
		name  string
		inner int
		outer int
	}{
		{"result + overhead ≤ batch", MaxResult + ResultOverhead, MaxBatch},
		{"batch ≤ command", MaxBatch, MaxCommand},
		{"command + header = log entry", MaxCommand + 2, MaxLogEntry},
		{"log entry as base64 ≤ stream frame", MaxLogEntry * 4 / 3, MaxStreamFrame},
		{"batch as base64 ≤ sync frame", MaxBatch * 4 / 3, MaxSyncFrame},
	}
	for _, c := range chain {
		if c.inner > c.outer {
			t.Errorf("%s: %d > %d", c.name, c.inner, c.outer)
		}
		t.Logf("%-36s %9d ≤ %9d", c.name, c.inner, c.outer)
	}
}
