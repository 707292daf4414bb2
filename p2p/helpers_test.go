package p2p

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// TestMain fails the run if a goroutine started by this package's
// non-test code outlives the tests (every Host is closed by then).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := waitNoLeaks(10 * time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "goroutines of package p2p still running after all tests:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoLeaks waits until no goroutine runs code from this package's
// non-test files and returns the offending stacks if some still do.
func waitNoLeaks(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		leaks := ourGoroutines()
		if leaks == "" || time.Now().After(deadline) {
			return leaks
		}
		<-tick.C
	}
}

// ourGoroutines returns the stacks of the goroutines that run code from this package's non-test
// files, except those in one of the functions named in except (a Host's own, while it is open).
func ourGoroutines(except ...string) string {
	const pkg = "github.com/hydra-compute/hydra/p2p."
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, pkg+"ourGoroutines") || slices.ContainsFunc(except, func(f string) bool { return strings.Contains(g, pkg+f) }) {
			continue
		}
		lines := strings.Split(g, "\n")
		for i := 0; i+1 < len(lines); i++ {
			// A frame is a function line then a tab-indented file:line.
			if strings.HasPrefix(lines[i], pkg) && !strings.Contains(lines[i+1], "_test.go") {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}

// waitFor polls cond until it holds or timeout passes, then fails the test
// with what. Polling a condition with a deadline is how these tests wait;
// they never sleep for a fixed time and hope.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// testKey returns a fresh Ed25519 identity.
func testKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func loopbackListen() []multiaddr.Multiaddr {
	return []multiaddr.Multiaddr{
		multiaddr.StringCast("/ip4/127.0.0.1/tcp/0"),
		multiaddr.StringCast("/ip4/127.0.0.1/udp/0/quic-v1"),
	}
}

// newTestHost starts a Host on loopback (or on listen, if given) and closes
// it when the test ends.
func newTestHost(t testing.TB, cluster string, key crypto.PrivKey, listen ...multiaddr.Multiaddr) (*Host, *logRecorder) {
	t.Helper()
	if key == nil {
		key = testKey(t)
	}
	if len(listen) == 0 {
		listen = loopbackListen()
	}
	rec := newLogRecorder(t)
	h, err := New(context.Background(), Config{
		Key:          key,
		Listen:       listen,
		Cluster:      cluster,
		AgentVersion: "hydra/test",
		Logger:       slog.New(rec),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, rec
}

// addrInfo is h's identity and addresses, as a --join flag gives them.
func addrInfo(t testing.TB, h *Host) peer.AddrInfo {
	t.Helper()
	infos, err := peer.AddrInfosFromP2pAddrs(h.Addrs()...)
	if err != nil || len(infos) != 1 {
		t.Fatalf("addrs of %s: %v %v", h.ID(), infos, err)
	}
	return infos[0]
}

// peerSet records the peers OnPeer reports; safe for concurrent use.
type peerSet struct {
	mu    sync.Mutex
	count map[peer.ID]int
}

func newPeerSet() *peerSet { return &peerSet{count: make(map[peer.ID]int)} }

func (s *peerSet) OnPeer(ai peer.AddrInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count[ai.ID]++
}

func (s *peerSet) n(p peer.ID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[p]
}

func (s *peerSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.count)
}

// logRecorder is a slog.Handler that keeps every record, so tests can ask
// how a peer was found, and prints them if the test fails.
type logRecorder struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newLogRecorder(t testing.TB) *logRecorder {
	r := &logRecorder{mu: new(sync.Mutex), lines: new([]string)}
	t.Cleanup(func() {
		if t.Failed() {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, l := range *r.lines {
				t.Log(l)
			}
		}
	})
	return r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", rec.Time.Format("15:04:05.000"), rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.lines = append(*r.lines, b.String())
	return nil
}

func (r *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), attrs...)
	return &c
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// has reports whether a recorded line contains every one of parts.
func (r *logRecorder) has(parts ...string) bool { return r.count(parts...) > 0 }

// count is the number of recorded lines that contain every one of parts.
func (r *logRecorder) count(parts ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
next:
	for _, l := range *r.lines {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		n++
	}
	return n
}
