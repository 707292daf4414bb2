//go:build linux

package procluster

// A cluster of nodes on loopback, each given every other one with --join.

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hydra-compute/hydra/internal/localport"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Cluster is a set of nodes prepared together by NewCluster.
type Cluster struct {
	Dir   string // holds every node's data directory and log
	Nodes []*Proc
}

// NewCluster prepares (does not start) n nodes of bin under dir, named prefix1, prefix2, ….
// Each node's identity is generated here and written into its data directory, so that every
// node can be given every other one's /p2p/ address with --join before any of them runs; each
// gets distinct TCP and HTTP ports on 127.0.0.1 and --mdns=false. A node's arguments are, in
// this order: node --data --name --listen --http --mdns=false --admit lan (loopback nodes admit
// each other with no approval: docs/security.md), then extra(i) if extra is not
// nil, then the --join flags.
func NewCluster(bin, dir, prefix string, n int, extra func(i int) []string) (*Cluster, error) {
	c := &Cluster{Dir: dir}
	var addrs []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i+1)
		data := filepath.Join(dir, name)
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, fmt.Errorf("node %s: data directory: %w", name, err)
		}
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("node %s: generate identity: %w", name, err)
		}
		raw, err := crypto.MarshalPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("node %s: marshal identity: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(data, "identity.key"), raw, 0o600); err != nil {
			return nil, fmt.Errorf("node %s: write identity: %w", name, err)
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("node %s: peer ID: %w", name, err)
		}
		tcp, err := localport.Free()
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
		httpPort, err := localport.Free()
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
		p := &Proc{
			Name:    name,
			Bin:     bin,
			DataDir: data,
			LogPath: filepath.Join(dir, name+".log"),
			HTTPURL: fmt.Sprintf("http://127.0.0.1:%d", httpPort),
			ID:      id.String(),
		}
		p.Args = []string{"node", "--data", data, "--name", name,
			"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", tcp),
			"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--mdns=false", "--admit", "lan"}
		if extra != nil {
			p.Args = append(p.Args, extra(i)...)
		}
		addrs = append(addrs, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tcp, id))
		c.Nodes = append(c.Nodes, p)
	}
	for i, p := range c.Nodes {
		for j, a := range addrs {
			if i != j {
				p.Args = append(p.Args, "--join", a)
			}
		}
	}
	return c, nil
}

// StartAll starts every node, one after the other without waiting between them, so that they
// bootstrap at about the same instant.
func (c *Cluster) StartAll() error {
	for _, p := range c.Nodes {
		if err := p.Start(); err != nil {
			return fmt.Errorf("start %s: %w", p.Name, err)
		}
	}
	return nil
}

// Stop SIGKILLs every node (see Proc.Kill) and waits for them.
func (c *Cluster) Stop() {
	for _, p := range c.Nodes {
		p.Kill()
	}
}

// ByID returns the node with peer ID id, or nil.
func (c *Cluster) ByID(id string) *Proc {
	for _, p := range c.Nodes {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// Name returns the name of the node with peer ID id for a report: "-" for no ID, the ID itself
// for a node not in c.
func (c *Cluster) Name(id string) string {
	if id == "" {
		return "-"
	}
	if p := c.ByID(id); p != nil {
		return p.Name
	}
	return id
}

// Tails writes the last lines of every node's log to stderr: what a benchmark shows before it
// gives up on a cluster, since the logs are removed with the work directory.
func (c *Cluster) Tails(lines int) {
	for _, p := range c.Nodes {
		b, _ := os.ReadFile(p.LogPath)
		ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(ls) > lines {
			ls = ls[len(ls)-lines:]
		}
		fmt.Fprintf(os.Stderr, "---- %s (%s) %s\n%s\n", p.Name, p.ID, p.LogPath, strings.Join(ls, "\n"))
	}
}
