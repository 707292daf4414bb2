package webui

import (
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// Activity is the coordinator's soft state (docs/design.md §2): which node
// computes which chunk right now and how fast each node is. It lives in the
// leader's memory only; the leader publishes it on gossip about once a
// second, so every node's API and UI can show it.
type Activity struct {
	Term   uint64                  `json:"term"`
	Leader string                  `json:"leader"`
	At     time.Time               `json:"at"`
	Leases []LeaseView             `json:"leases"`
	Nodes  map[string]NodeActivity `json:"nodes"` // by node ID
}

// LeaseView is one lease: a chunk in flight on a node.
type LeaseView struct {
	ID uint64 `json:"id"`
	compute.Chunk
	Node   string    `json:"node"`
	Issued time.Time `json:"issued"`
	Probe  bool      `json:"probe,omitempty"`
	Backup bool      `json:"backup,omitempty"`
}

// NodeActivity is what the coordinator knows of one worker.
type NodeActivity struct {
	Rates  map[string]float64 `json:"rates"` // job kind → work per second, measured (π samples, Mandelbrot pixels)
	Kernel string             `json:"kernel,omitempty"`
}
