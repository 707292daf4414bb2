//go:build !cheat

package cli

import (
	"strings"
	"testing"
)

// TestNoCheatFlagInNormalBuilds: --cheat-rate exists only in builds with the
// cheat tag; a normal build refuses it as an unknown flag.
func TestNoCheatFlagInNormalBuilds(t *testing.T) {
	code, _, stderr := run("node", "--data", t.TempDir(), "--cheat-rate", "0.1")
	if code != ExitConfig || !strings.Contains(stderr, "cheat-rate") {
		t.Fatalf("exit %d, stderr %q: want a usage error naming the unknown flag", code, stderr)
	}
}

func TestTrustUsage(t *testing.T) {
	for _, args := range [][]string{{"trust"}, {"trust", "reset"}, {"trust", "forgive", "n1"}, {"trust", "reset", "a", "b"}} {
		if code, _, _ := run(args...); code != ExitConfig {
			t.Errorf("%v: exit %d, want %d", args, code, ExitConfig)
		}
	}
}
