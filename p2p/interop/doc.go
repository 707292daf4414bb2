// Package interop checks that a libp2p peer of another implementation
// (js-libp2p, in interop.mjs) can dial a Hydra node over TCP with Noise and
// yamux, ping it with the standard /ipfs/ping/1.0.0 and identify it. It has
// no code of its own, only a test, which is skipped unless node and the npm
// packages (scripts/install-interop-deps) are installed.
package interop
