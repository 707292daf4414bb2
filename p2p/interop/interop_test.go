package interop

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/multiformats/go-multiaddr"
)

type result struct {
	Peer         string   `json:"peer"`
	Encryption   string   `json:"encryption"`
	Multiplexer  string   `json:"multiplexer"`
	RTT          float64  `json:"rtt"`
	AgentVersion string   `json:"agentVersion"`
	Protocols    []string `json:"protocols"`
}

func TestJSLibp2pDialsPingsIdentifies(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "libp2p", "package.json")); err != nil {
		t.Skip("js-libp2p not installed: run scripts/install-interop-deps")
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.New(context.Background(), p2p.Config{
		Key:          key,
		Listen:       []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/127.0.0.1/tcp/0")},
		Cluster:      "interop",
		AgentVersion: "hydra/interop-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var target string
	for _, a := range h.Addrs() {
		if _, err := a.ValueForProtocol(multiaddr.P_TCP); err == nil {
			target = a.String()
			break
		}
	}
	if target == "" {
		t.Fatalf("no TCP address in %v", h.Addrs())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "interop.mjs", target)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("js-libp2p peer failed: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var res result
	line := strings.TrimSpace(string(out))
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("bad output %q: %v", out, err)
	}
	t.Logf("js-libp2p saw: %+v", res)
	if res.Peer != h.ID().String() {
		t.Errorf("dialled peer %s, want %s", res.Peer, h.ID())
	}
	if !strings.HasPrefix(res.AgentVersion, "hydra/") {
		t.Errorf("agent version %q does not start with hydra/", res.AgentVersion)
	}
	if !strings.Contains(res.Encryption, "noise") || !strings.Contains(res.Multiplexer, "yamux") {
		t.Errorf("connection used %q and %q, want noise and yamux", res.Encryption, res.Multiplexer)
	}
	found := false
	for _, p := range res.Protocols {
		found = found || p == "/ipfs/ping/1.0.0"
	}
	if !found {
		t.Errorf("identify protocols %v lack /ipfs/ping/1.0.0", res.Protocols)
	}
}
