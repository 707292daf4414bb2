// Package webui serves Hydra's HTTP API and (later) its embedded web UI on
// every node.
//
// It knows nothing of raft or libp2p: it talks to the node through the small
// Backend interface, which node.Node implements, so handlers are tested with a
// fake backend and the same code runs against a real cluster. Every node
// answers reads from its own replica; writes need the cluster's API token
// (Authorization: Bearer <token>).
//
// webui must never import node, consensus or p2p.
package webui
