//go:build cheat

package cli

import (
	"strings"
	"testing"
)

// TestCheatRateBounds: a cheat build takes --cheat-rate only as a fraction
// from 0 to 1; NaN, which no comparison rules out, is refused too.
func TestCheatRateBounds(t *testing.T) {
	for _, v := range []string{"-0.1", "1.5", "NaN", "+Inf"} {
		code, _, stderr := run("node", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0",
			"--http", "127.0.0.1:0", "--mdns=false", "--dht=false", "--cheat-rate", v)
		if code != ExitConfig || !strings.Contains(stderr, "--cheat-rate") {
			t.Errorf("--cheat-rate %s: exit %d, stderr %q: want a usage error naming the flag", v, code, stderr)
		}
	}
}
