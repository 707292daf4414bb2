//go:build linux

// Command benchsecurity measures what admission costs and how fast it acts (docs/security.md),
// with real `hydra node` processes on loopback (--mdns=false, --dht=false, 127.0.0.1 only).
// scripts/bench-security builds and runs it.
//
//  1. Approval → computing: a founder (approval mode) runs a long π job; a second node
//     started with default flags (--join the founder) waits for approval; the time from
//     `POST /api/v1/approve` answering to the founder's status showing the new node
//     "working" (it holds a chunk).
//  2. Revocation → refused: `POST /api/v1/remove` of that node; a probe with the removed
//     node's own key (its identity.key) dials the founder every 10 ms: the time from the
//     remove answering to the first refused dial.
//  3. Rejected connections: -keys fresh keys are revoked (remove by peer ID), then -conns
//     dialers (one libp2p host per key, each dial a full TCP + noise handshake) aim at
//     -rate attempts per second against the founder for -secs; reports the attempts reached
//     per second, how many were refused, and the founder's RSS before, at its peak and after
//     (VmRSS of the node process).
//
// Every process it starts is killed on exit, on error and on SIGINT/SIGTERM.
package main

import (
	"bufio"
	"context"

	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
	"github.com/hydra-compute/hydra/webui"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/multiformats/go-multiaddr"
)

var (
	flagHydra = flag.String("hydra", "", "hydra binary (default: build one into the work directory)")
	flagWork  = flag.String("work", "", "work directory (default: a new temporary one)")
	flagKeep  = flag.Bool("keep", false, "keep the work directory")
	flagKeys  = flag.Int("keys", 256, "rejected connections: revoked keys (one dialer host each)")
	flagRate  = flag.Int("rate", 1000, "rejected connections: attempts per second aimed at")
	flagSecs  = flag.Float64("secs", 10, "rejected connections: seconds of flood")
)

var sess = procluster.Session{Prog: "benchsecurity"}

func main() {
	flag.Parse()
	if err := checkFlags(*flagKeys, *flagRate, *flagSecs); err != nil {
		fmt.Fprintln(os.Stderr, "benchsecurity:", err)
		os.Exit(2)
	}
	sess.Keep = *flagKeep
	sess.ExitOnSignal()
	sess.Check(sess.SetWorkDir(*flagWork, "hydra-bench-security-"))
	defer sess.Cleanup()
	bin := *flagHydra
	if bin == "" {
		bin = filepath.Join(sess.WorkDir(), "hydra")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			sess.Fatalf("go build: %v\n%s", err, out)
		}
	}
	c, err := procluster.NewCluster(bin, sess.WorkDir(), "s", 2, func(i int) []string {
		if i == 1 {
			return []string{"--cpus", "1"}
		}
		return []string{"--cpus", "1", "--compute=false"}
	})
	sess.Check(err)
	founder, joiner := c.Nodes[0], c.Nodes[1]
	// The joiner is a default node: no --admit lan, and only the founder to join.
	joiner.Args = without(joiner.Args, "--admit")
	founder.Args = without(founder.Args, "--join") // it founds alone
	sess.Check(founder.Start())
	tok := waitToken(founder)
	api := webui.NewClient(founder.HTTPURL, tok)
	ctx := context.Background()
	sess.Check(api.Do(ctx, "POST", "/api/v1/admit", map[string]string{"mode": "approval"}, nil))
	sess.Check(api.Do(ctx, "POST", "/api/v1/jobs", map[string]any{"kind": "pi", "samples": uint64(1_000_000_000_000_000), "seed": 1}, nil))

	// 1. Approval → computing.
	sess.Check(joiner.Start())
	var fp string
	waitUntil("the joiner pending", 60*time.Second, func() bool {
		var st webui.Status
		if api.Do(ctx, "GET", "/api/v1/status", nil, &st) != nil {
			return false
		}
		for _, p := range st.Pending {
			if p.ID == joiner.ID {
				fp = p.Fingerprint
			}
		}
		return fp != ""
	})
	sess.Check(api.Do(ctx, "POST", "/api/v1/approve", map[string]string{"fingerprint": fp}, nil))
	t0 := time.Now()
	waitUntil("the joiner computing", 120*time.Second, func() bool {
		var st webui.Status
		if api.Do(ctx, "GET", "/api/v1/status", nil, &st) != nil {
			return false
		}
		for _, n := range st.Nodes {
			if n.ID == joiner.ID && n.State == "working" {
				return true
			}
		}
		return false
	})
	approval := time.Since(t0)
	fmt.Printf("approval → computing: %.2f s (POST /api/v1/approve answered → the founder's status shows the new node working)\n", approval.Seconds())

	// 2. Revocation → refused, probed with the removed node's own key.
	key := readKey(filepath.Join(joiner.DataDir, "identity.key"))
	probe := newDialer(key)
	defer probe.Close()
	target := peer.AddrInfo{ID: peer.ID(mustDecode(founder.ID)), Addrs: []multiaddr.Multiaddr{listenAddr(founder)}}
	sess.Check(api.Do(ctx, "POST", "/api/v1/remove", map[string]string{"node": joiner.ID}, nil))
	t1 := time.Now()
	waitUntil("the removed key refused", 30*time.Second, func() bool {
		err := dialOnce(probe, target)
		time.Sleep(10 * time.Millisecond) // the probe's period
		return err != nil
	})
	fmt.Printf("revocation → refused: %.3f s (POST /api/v1/remove answered → first dial with the removed key refused)\n", time.Since(t1).Seconds())
	joiner.Kill()

	// 3. Rejected connections.
	dialers := make([]host.Host, *flagKeys)
	for i := range dialers {
		k, _, err := crypto.GenerateEd25519Key(nil)
		sess.Check(err)
		dialers[i] = newDialer(k)
		defer dialers[i].Close()
		sess.Check(api.Do(ctx, "POST", "/api/v1/remove", map[string]string{"node": dialers[i].ID().String()}, nil))
	}
	refused0 := refusedCount(founder)
	rss0, _, _ := procluster.RSSKB(founder.PID())
	var attempts, refused atomic.Int64
	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if r, _, _ := procluster.RSSKB(founder.PID()); r > peak.Load() {
				peak.Store(r)
			}
		}
	}()
	tokens := make(chan struct{}, *flagRate)
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(*flagRate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				close(tokens)
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default: // the dialers are behind: the rate is what they reach
				}
			}
		}
	}()
	var wg sync.WaitGroup
	start := time.Now()
	for _, d := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				attempts.Add(1)
				if dialOnce(d, target) != nil {
					refused.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Duration(*flagSecs * float64(time.Second))) // the flood's length
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	sampler.Wait()
	time.Sleep(2 * time.Second) // let the node settle before the last sample
	rss1, _, _ := procluster.RSSKB(founder.PID())
	byNode := refusedCount(founder) - refused0
	fmt.Printf("rejected connections: %d attempts in %.1f s = %.0f/s (aimed at %d/s, %d dialers); the node's gater refused %.0f (%.0f/s; %d dials failed or were closed); founder RSS %.1f MiB before, %.1f MiB peak, %.1f MiB after\n",
		attempts.Load(), elapsed.Seconds(), float64(attempts.Load())/elapsed.Seconds(), *flagRate, len(dialers), byNode, byNode/elapsed.Seconds(), refused.Load(),
		float64(rss0)/1024, float64(max(peak.Load(), rss0))/1024, float64(rss1)/1024)
	if !founder.Alive() {
		sess.Fatalf("the founder died under the flood")
	}
}

// checkFlags refuses the flood's settings that would crash it after the first two figures were
// measured: a -rate of 0 divided the second by zero, one above a billion made a zero ticker
// interval and a negative one a negative channel size (all panics); -keys and -secs below zero
// are no flood either.
func checkFlags(keys, rate int, secs float64) error {
	switch {
	case keys < 0:
		return fmt.Errorf("-keys %d: want 0 or more", keys)
	case rate < 1 || rate > 1_000_000:
		return fmt.Errorf("-rate %d: want 1 to 1000000 attempts per second", rate)
	case !(secs >= 0) || secs > 24*3600:
		return fmt.Errorf("-secs %g: want 0 to 86400", secs)
	}
	return nil
}

// refusedCount reads the node's hydra_p2p_refused_connections_total.
func refusedCount(p *procluster.Proc) float64 {
	resp, err := http.Get(p.HTTPURL + "/metrics")
	sess.Check(err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "hydra_p2p_refused_connections_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			sess.Check(err)
			return f
		}
	}
	sess.Fatalf("%s/metrics has no hydra_p2p_refused_connections_total", p.HTTPURL)
	return 0
}

// without drops every flag (and its value) from args.
func without(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag && i+1 < len(args) {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func waitToken(p *procluster.Proc) string {
	var tok string
	waitUntil(p.Name+"'s api-token", 60*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(p.DataDir, "api-token"))
		tok = string(b)
		for len(tok) > 0 && (tok[len(tok)-1] == '\n' || tok[len(tok)-1] == ' ') {
			tok = tok[:len(tok)-1]
		}
		return err == nil && tok != ""
	})
	return tok
}

func waitUntil(what string, limit time.Duration, cond func() bool) {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			sess.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readKey(path string) crypto.PrivKey {
	b, err := os.ReadFile(path)
	sess.Check(err)
	k, err := crypto.UnmarshalPrivateKey(b)
	sess.Check(err)
	return k
}

func mustDecode(s string) peer.ID {
	p, err := peer.Decode(s)
	sess.Check(err)
	return p
}

// listenAddr is the founder's TCP address from its arguments.
func listenAddr(p *procluster.Proc) multiaddr.Multiaddr {
	for i, a := range p.Args {
		if a == "--listen" && i+1 < len(p.Args) {
			m, err := multiaddr.NewMultiaddr(p.Args[i+1])
			sess.Check(err)
			return m
		}
	}
	sess.Fatalf("%s has no --listen", p.Name)
	return nil
}

// newDialer is a client host with key k that only dials.
func newDialer(k crypto.PrivKey) host.Host {
	h, err := libp2p.New(libp2p.Identity(k), libp2p.NoListenAddrs, libp2p.DisableRelay(), libp2p.ResourceManager(&network.NullResourceManager{}))
	sess.Check(err)
	return h
}

// dialOnce makes one full connection attempt (TCP, noise, the node's gater) and closes
// whatever it got; an error is a refusal or a failure.
func dialOnce(h host.Host, target peer.AddrInfo) error {
	h.Peerstore().AddAddrs(target.ID, target.Addrs, time.Minute)
	if sw, ok := h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(target.ID)
	}
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(context.Background(), "bench"), 5*time.Second)
	defer cancel()
	c, err := h.Network().DialPeer(ctx, target.ID)
	if err == nil {
		// The dialer may finish its handshake before the listener's gater closes the
		// connection: a connection that is closed at once is a refusal too.
		time.Sleep(5 * time.Millisecond)
		closed := c.IsClosed()
		_ = h.Network().ClosePeer(target.ID)
		if closed {
			return errors.New("closed by the node")
		}
		return nil
	}
	return err
}
