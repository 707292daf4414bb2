// Package audit is the pure part of Hydra's result audits (docs/design.md §4): Hydra's kernels
// are bit-exact on every architecture, so any part of a chunk can be recomputed elsewhere and
// compared bit for bit.
//
//   - Commitment: a worker's chunk result is cut into fixed-size blocks (π: [PiBlock] samples
//     aligned to the job's sample 0; Mandelbrot: one row), each hashed into a leaf ([PiLeaf],
//     [MandelLeaf]); the chunk's commitment is the Merkle root over its leaves ([Root], RFC 9162
//     §2.1 tree shape), with inclusion proofs ([Prove], [Verify]).
//   - Credibility: a [Standing] per node and kernel, BOINC-style: a new node is audited on every
//     chunk, a trusted one with probability about 1/(consecutive passes), never below a floor
//     ([Policy.Probability]); a failure resets it, and a node with [Policy.QuarantineAfter]
//     failures is quarantined.
//   - Selection: whether a chunk is audited and which blocks are recomputed ([Policy.Choose]),
//     drawn from a seed the coordinator puts in the raft log after the commitment is there, so a
//     worker cannot know in advance which part will be checked.
//
// It is deterministic and clock-free, imports nothing of Hydra's, and every replica computes the
// same decisions from the same log.
package audit
