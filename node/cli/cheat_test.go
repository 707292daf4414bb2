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

// TestCheatBuildSaysSo: a cheat build with a rate above 0 says so on stderr before anything
// else; its warning went to the flag set's output, which is silenced (newFlagSet), and was lost.
func TestCheatBuildSaysSo(t *testing.T) {
	// --log-level loud stops the node right after the flags: the warning comes before.
	_, _, stderr := run("node", "--data", t.TempDir(), "--cheat-rate", "0.5", "--log-level", "loud")
	if !strings.Contains(stderr, "cheat build") {
		t.Fatalf("stderr %q: want the cheat build's warning", stderr)
	}
}
