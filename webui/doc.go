// Package webui serves Hydra's HTTP API (/api/v1/, JSON and server-sent
// events) and its embedded web UI (static/: plain ES modules, with uPlot
// vendored by scripts/build-ui; it loads nothing from the internet) on every
// node, and the Go client the CLI uses (client.go, client_jobs.go).
//
// It knows nothing of raft or libp2p: it talks to the node through small
// interfaces, Backend (cluster status, credentials, health) and JobBackend
// (the job routes), and optional ones a backend may implement (Admission,
// ConfigBackend, ModuleBackend, Watcher for the event stream, …), which
// node.Node does, so handlers are tested with fakes and the same code runs
// against a real cluster. Handlers stay thin: they parse and validate
// (DecodeJobRequest), call the backend and shape JSON; colouring Mandelbrot
// counts into a PNG (png.go) is the one piece of presentation here.
//
// Every node answers reads from its own replica: open, or under the
// cluster's read-auth setting with a viewer or admin credential (a bearer
// header, ?token=, or the read cookie a ?token= link sets: readauth.go).
// Writes need an admin credential (Authorization: Bearer <token>;
// docs/security.md). The event stream (events.go, events_diff.go) sends
// each client a coalesced frame at most every 100 ms, its job list bounded
// to the newest jobs (docs/api.md, Events).
//
// webui must never import node, consensus or p2p.
package webui
