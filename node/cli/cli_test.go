package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit78WithOneLine(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	quiet := []string{"--mdns=false", "--dht=false", "--compute=false", "--listen", "/ip4/127.0.0.1/tcp/0"}
	cases := [][]string{
		append([]string{"node", "--data", t.TempDir(), "--http", busy.Addr().String()}, quiet...),
		append([]string{"node", "--data", file, "--http", "127.0.0.1:0"}, quiet...),
		{"nosuch"},
		{"node", "--bogus"},
		{"node", "--data", dir, "--listen", "/ip4/1.2.3"},
		// Well-formed, but no transport takes it, or the IP is not this machine's.
		append([]string{"node", "--data", t.TempDir(), "--http", "127.0.0.1:0"}, append(quiet, "--listen", "/ip4/127.0.0.1/udp/0")...),
		append([]string{"node", "--data", t.TempDir(), "--http", "127.0.0.1:0"}, append(quiet, "--listen", "/ip4/192.0.2.1/tcp/0")...),
		{"node", "--data", dir, "--join", "/ip4/127.0.0.1/tcp/4100"},
		{"node", "--data", dir, "--voter", "maybe"},
		{"node", "--data", dir, "--voters", "2"},
		{"node", "--data", dir, "--log-level", "loud"},
		{"node", "--data", dir, "--log-format", "xml"},
		{"node", "--data", dir, "--raft-multiplier", "-1"},
		append([]string{"node", "--data", dir, "--max-owner-cpu", "0"}, quiet...),
		append([]string{"node", "--data", dir, "--max-owner-cpu", "-5"}, quiet...),
		append([]string{"node", "--data", dir, "--max-owner-cpu", "101"}, quiet...),
		append([]string{"node", "--data", dir, "--max-owner-cpu", "NaN"}, quiet...),
		{"node", "--data", dir, "--http", "nope"},
		{"node", "--data", dir, "stray"},
		{"node", "--data", dir, "--admit", "everyone"},
		{"node", "--data", dir, "--join-token", "not-a-token"},
		{"node", "--data", dir, "--join-token", "x", "--join-token-file", "y"},
		{"token", "frobnicate"},
		{"approve"},
		// Bad flag values of the admin commands are refused before any request
		// (the unreachable --api would exit 1).
		{"approve", "AAAA-BBBB", "--api", "http://127.0.0.1:1", "--token", "x", "--role", "boss"},
		{"token", "create", "--api", "http://127.0.0.1:1", "--token", "x", "--role", "owner"},
		{"token", "create", "--api", "http://127.0.0.1:1", "--token", "x", "--uses", "-1"},
		{"admit", "sometimes"},
		{"status", "--data", dir}, // no node ever ran there
	}
	for _, args := range cases {
		code, stdout, stderr := run(args...)
		if code != ExitConfig {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, ExitConfig, stderr)
		}
		if n := strings.Count(strings.TrimRight(stderr, "\n"), "\n"); n != 0 || stderr == "" {
			t.Errorf("%v: want one line on stderr, got %q", args, stderr)
		}
		// One line in all: a bad flag does not print the flag list too.
		if stdout != "" {
			t.Errorf("%v: want nothing on stdout beside the one-line error, got %.120q", args, stdout)
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

// TestHelpPrintsUsageOnce: `hydra CMD -h` prints its usage once, naming the command as typed
// (flag.Parse prints it on -h already: printing it again doubled every command's help).
func TestHelpPrintsUsageOnce(t *testing.T) {
	var cases [][]string
	for _, c := range commands() {
		cases = append(cases, []string{c.name, "-h"})
	}
	cases = append(cases, []string{"submit", "pi", "-h"}, []string{"submit", "mandelbrot", "-h"},
		[]string{"submit", "wasm", "-h"}, []string{"token", "create", "-h"}, []string{"token", "list", "-h"},
		[]string{"token", "revoke", "-h"}, []string{"config", "get", "-h"}, []string{"config", "set", "--help"},
		[]string{"config", "--help"}, []string{"trust", "reset", "-h"})
	for _, args := range cases {
		code, out, _ := run(args...)
		if code != ExitOK {
			t.Errorf("%v: exit %d, want %d", args, code, ExitOK)
		}
		if n := strings.Count(out, "Usage:"); n != 1 {
			t.Errorf("%v: %d usage lines, want 1:\n%s", args, n, out)
		}
		want := "Usage: hydra " + args[0]
		if args[1] != "-h" && args[1] != "--help" {
			want += " " + args[1]
		}
		if !strings.HasPrefix(out, want) || strings.Contains(strings.SplitN(out, "\n", 2)[0], "--help") {
			t.Errorf("%v: usage starts %q, want %q…", args, strings.SplitN(out, "\n", 2)[0], want)
		}
	}
}

func TestStatusUnreachableNodeExit1(t *testing.T) {
	code, _, stderr := run("status", "--api", "http://127.0.0.1:1")
	if code != ExitFailure {
		t.Fatalf("exit %d, want %d: %s", code, ExitFailure, stderr)
	}
}

// TestFlagErrorsAndHelpEveryParser: each way a command parses its flags (parseFlags,
// parseFlagsArgs, oneArg, config's own) answers an unknown flag with exit 78 and one line on
// stderr, and -h with its usage on stdout and exit 0: they share parseFlagSet.
func TestFlagErrorsAndHelpEveryParser(t *testing.T) {
	for _, cmd := range [][]string{{"node"}, {"job", "j1"}, {"approve", "ab12"}, {"config", "get"}} {
		code, stdout, stderr := run(append(cmd, "--bogus")...)
		if code != ExitConfig || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "bogus") || stdout != "" {
			t.Errorf("%v --bogus: exit %d, stdout %.80q, stderr %q; want %d and one line naming the flag, nothing else", cmd, code, stdout, stderr, ExitConfig)
		}
		code, stdout, stderr = run(append(cmd, "-h")...)
		if code != ExitOK || !strings.HasPrefix(stdout, "Usage: hydra "+cmd[0]) || stderr != "" {
			t.Errorf("%v -h: exit %d, stdout %.80q, stderr %q; want the usage and exit 0", cmd, code, stdout, stderr)
		}
	}
}

// TestCredentialTTLIsAUsageError: `hydra token create --role admin --ttl 1h` exited 1 as the node
// refused it; a credential with --ttl is now caught here, a usage error (78) with a clear message.
// A request the node refuses, whatever its status, stays a runtime failure (1).
func TestCredentialTTLIsAUsageError(t *testing.T) {
	var code atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		webui.WriteJSON(w, int(code.Load()), map[string]string{"error": "ttl \"1y\": want a duration such as 24h"})
	}))
	defer srv.Close()
	api := []string{"--api", srv.URL, "--token", "tok"}
	code.Store(http.StatusBadRequest)
	got, _, errs := run(append([]string{"token", "create", "--role", "admin", "--ttl", "1h"}, api...)...)
	if got != ExitConfig || !strings.Contains(errs, "--ttl") || strings.Count(errs, "\n") != 1 {
		t.Errorf("token create --role admin --ttl 1h: exit %d %q, want %d and one line about --ttl", got, errs, ExitConfig)
	}
	for status, want := range map[int]int{http.StatusBadRequest: ExitFailure, http.StatusNotFound: ExitFailure,
		http.StatusConflict: ExitFailure, http.StatusServiceUnavailable: ExitFailure} {
		code.Store(int32(status))
		if got, _, errs := run(append([]string{"token", "create", "--role", "member", "--ttl", "1h"}, api...)...); got != want {
			t.Errorf("token create answered %d: exit %d %q, want %d", status, got, errs, want)
		}
	}
}

// TestZeroHysteresisMeansAtOnce: --pause-after 0 and --resume-after 0 mean at once. The owner
// policy reads a zero hysteresis as its default, so a node started with --resume-after 0 waited
// the default minute before resuming while its log said resume_after=0s; a 0 given now reaches
// it as the shortest duration. A negative one is refused (exit 78, one line naming the flag;
// a bad --log-level, judged after these flags, is what a flag let through meets).
func TestZeroHysteresisMeansAtOnce(t *testing.T) {
	if d := atOnce(0); d <= 0 || d > time.Millisecond {
		t.Errorf("atOnce(0) = %v, want the shortest duration above 0", d)
	}
	if d := atOnce(5 * time.Second); d != 5*time.Second {
		t.Errorf("atOnce(5s) = %v", d)
	}
	for _, f := range []string{"--pause-after", "--resume-after"} {
		for v, want := range map[string]string{"0": "--log-level", "-1s": f + " -1s"} {
			args := []string{"node", "--data", t.TempDir(), f, v, "--log-level", "loud"}
			code, _, stderr := run(args...)
			if code != ExitConfig || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("%v: exit %d %q, want %d and one line naming %s", args, code, stderr, ExitConfig, want)
			}
		}
	}
}

// TestTokenCreateTTLZeroNeverExpires: `hydra token create --ttl 0` asks for a join token that
// never expires (the API's "ttl": "0s"), and with no --ttl the node's default (24 h) holds. The
// CLI sent no ttl for --ttl 0, so the token expired after a day, as if --ttl was not given.
func TestTokenCreateTTLZeroNeverExpires(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("decode %s: %v", r.URL, err)
		}
		got.Store(req)
		webui.WriteJSON(w, http.StatusCreated, webui.TokenCreated{Token: "hydra-join2.x", ID: "x", Role: "member", Kind: "join"})
	}))
	defer srv.Close()
	api := []string{"--api", srv.URL, "--token", "tok"}
	for _, tc := range []struct {
		flags []string
		ttl   any // nil: not sent
	}{
		{[]string{"--ttl", "0"}, "0s"},
		{[]string{"--ttl", "0s"}, "0s"},
		{nil, nil},
		{[]string{"--ttl", "48h"}, "48h0m0s"},
	} {
		args := append(append([]string{"token", "create", "--role", "member"}, tc.flags...), api...)
		if code, _, errs := run(args...); code != ExitOK {
			t.Fatalf("%v: exit %d %q", args, code, errs)
		}
		if ttl := got.Load().(map[string]any)["ttl"]; ttl != tc.ttl {
			t.Errorf("token create %v: sent ttl %v, want %v", tc.flags, ttl, tc.ttl)
		}
	}
	// An API credential has no ttl, --ttl 0 included.
	if code, _, errs := run(append([]string{"token", "create", "--role", "admin", "--ttl", "0"}, api...)...); code != ExitConfig {
		t.Errorf("token create --role admin --ttl 0: exit %d %q, want %d", code, errs, ExitConfig)
	}
}
