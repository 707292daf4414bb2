package node

// Build information, stamped in by the release build with
// -ldflags "-X github.com/hydra-compute/hydra/node.Version=…" and friends.
// Version also names the node in libp2p identify ("hydra/<Version>") and in
// announcements, so mixed-version clusters can be told apart.
var (
	Version   = "0.1.0-dev"
	Commit    = "unknown"
	BuildDate = "unknown"
)

// AgentVersion is the libp2p identify agent string of this build.
func AgentVersion() string { return "hydra/" + Version }
