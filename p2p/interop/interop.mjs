// A standard js-libp2p peer that dials a Hydra node, pings and identifies
// it, and prints the result as one JSON line. Usage: node interop.mjs MULTIADDR
// (a /ip4/.../tcp/.../p2p/... address). Run by interop_test.go.

// Some dependencies target Node 22; Node 20 lacks Promise.withResolvers.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { multiaddr } = await import('@multiformats/multiaddr')

const target = process.argv[2]
if (!target) {
  console.error('usage: node interop.mjs MULTIADDR')
  process.exit(2)
}

const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})

try {
  const ma = multiaddr(target)
  const conn = await node.dial(ma, { signal: AbortSignal.timeout(15000) })
  const rtt = await node.services.ping.ping(ma, { signal: AbortSignal.timeout(15000) })
  const id = await node.services.identify.identify(conn, { signal: AbortSignal.timeout(15000) })
  console.log(JSON.stringify({
    peer: conn.remotePeer.toString(),
    encryption: conn.encryption,
    multiplexer: conn.multiplexer,
    rtt,
    agentVersion: id.agentVersion,
    protocols: id.protocols
  }))
} finally {
  await node.stop()
}
