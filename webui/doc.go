// Package webui serves Hydra's HTTP API (/api/v1/, JSON and server-sent
// events) and its embedded web UI (static/: plain ES modules, with uPlot
// vendored by scripts/build-ui; it loads nothing from the internet) on every
// node.
//
// It knows nothing of raft or libp2p: it talks to the node through two small
// interfaces, Backend (cluster status, token, health) and JobBackend (the job
// routes), which node.Node implements, so handlers are tested with fakes and
// the same code runs against a real cluster. Handlers stay thin: they parse
// and validate (DecodeJobRequest), call the backend and shape JSON; colouring
// Mandelbrot counts into a PNG (png.go) is the one piece of presentation here. Every node
// answers reads from its own replica; writes need the cluster's API token
// (Authorization: Bearer <token>).
//
// webui must never import node, consensus or p2p.
package webui
