// Package p2p is Hydra's networking layer, and only that: a libp2p host
// built from a persisted identity (identity.go, host.go, limits.go), a
// connection gater that treats each peer as the membership layer says
// (gate.go: members, outsiders who may only ask to join, refused keys),
// peer discovery by mDNS on the LAN, by redialled --join peers and by a DHT
// rendezvous beyond it (discovery.go, mdns.go, rendezvous.go, with the
// records a DHT server holds bounded: providers.go), gossipsub topics for
// small lossy announcements (gossip.go, and gossiprepair.go for peers
// gossipsub gave up on while connected), framed request/response over
// streams (rpc.go), and the end of connections that a change of address
// left leading nowhere (moved.go, with the machine's addresses watched by
// addrwatch_linux.go or addrwatch_other.go).
//
// It knows nothing of raft, jobs, chunks or who is a member (it is told
// through SetAccess), and imports nothing of Hydra's but the leaf packages
// wire (frames and size limits) and internal/atomicfile (the identity key's
// file): consensus and node build on it, never the other way round; compute
// does not know it exists (docs/design.md §1). Protocol IDs appear here only
// to give them resource-manager budgets.
//
// Choices worth knowing:
//
//   - A Host listens on every address it is given (by default the IPv4 and
//     IPv6 wildcards, TCP and QUIC) and fails if any one but the IPv6
//     wildcard cannot be used; a port that is taken wraps ErrAddrInUse, an
//     address no transport takes or this machine lacks ErrBadListenAddr.
//     TCP reuseport is off so that "taken" is detected even against
//     another libp2p process.
//   - Every Hydra protocol lives under /hydra/ and has explicit limits.
//     The DHT uses the /hydra prefix, so Hydra nodes never join the public
//     IPFS DHT.
//   - A Host registers /hydra/member/<hash of cluster>/1.0.0, never used
//     for data: identify advertises it, so a node learns that a peer that
//     dialled it belongs to its cluster with no extra round trip.
//   - Discovery reports peers through one callback, DiscoveryConfig.OnPeer,
//     whatever found them; consensus decides what a peer is worth.
//
// Everything a Host starts stops when it is closed, and Close waits for it.
package p2p
