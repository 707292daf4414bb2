package cli

import (
	"bytes"
	"strings"
	"testing"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	dir := t.TempDir()
	cases := [][]string{
		{"nosuch"},
		{"node", "--bogus"},
		{"node", "--data", dir, "--listen", "/ip4/1.2.3"},
		{"node", "--data", dir, "--join", "/ip4/127.0.0.1/tcp/4100"},
		{"node", "--data", dir, "--voter", "maybe"},
		{"node", "--data", dir, "--voters", "2"},
		{"node", "--data", dir, "--log-level", "loud"},
		{"node", "--data", dir, "--log-format", "xml"},
		{"node", "--data", dir, "--raft-multiplier", "-1"},
		{"node", "--data", dir, "--http", "nope"},
		{"node", "--data", dir, "stray"},
		{"status", "--data", dir}, // no node ever ran there
	}
	for _, args := range cases {
		code, _, stderr := run(args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, ExitUsage, stderr)
		}
		if n := strings.Count(strings.TrimRight(stderr, "\n"), "\n"); n != 0 || stderr == "" {
			t.Errorf("%v: want one line on stderr, got %q", args, stderr)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	if code, out, _ := run("help"); code != ExitOK || !strings.Contains(out, "node") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, out, _ := run("version"); code != ExitOK || !strings.HasPrefix(out, "hydra ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, out, _ := run("node", "-h"); code != ExitOK || !strings.Contains(out, "--listen") && !strings.Contains(out, "-listen") {
		t.Fatalf("node -h: %d %q", code, out)
	}
}

func TestStatusUnreachableNodeExit1(t *testing.T) {
	code, _, stderr := run("status", "--api", "http://127.0.0.1:1")
	if code != ExitFailure {
		t.Fatalf("exit %d, want %d: %s", code, ExitFailure, stderr)
	}
}
