package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
)

// Hash is a SHA-256 digest: a leaf, an inner node or a root of a chunk's commitment.
type Hash [32]byte

// String shows the first bytes in hex, as logs print a commitment.
func (h Hash) String() string { return fmt.Sprintf("%x", h[:6]) }

// Domain-separation prefixes of RFC 9162 §2.1.1: a leaf can never be taken for an inner node.
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// MaxLeaves bounds the leaves of one chunk's commitment (and so the blocks one audit can ask
// for). The scheduler keeps π chunks below MaxLeaves×PiBlock samples; a Mandelbrot job has at
// most 16,384 rows.
const MaxLeaves = 1 << 16

// maxProofLen is the longest inclusion proof of a tree of MaxLeaves leaves.
const maxProofLen = 17

func hashNode(l, r Hash) Hash {
	var b [65]byte
	b[0] = nodePrefix
	copy(b[1:], l[:])
	copy(b[33:], r[:])
	return sha256.Sum256(b[:])
}

// split is the RFC 9162 split point of n > 1 leaves: the largest power of two below n.
func split(n int) int { return 1 << (bits.Len(uint(n-1)) - 1) }

// Root returns the Merkle tree hash of leaves (RFC 9162 §2.1.1): the commitment of a chunk. The
// root of no leaves is the hash of the empty string; the root of one leaf is the leaf.
func Root(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := split(len(leaves))
	return hashNode(Root(leaves[:k]), Root(leaves[k:]))
}

// Prove returns the inclusion proof of leaf i among leaves (RFC 9162 §2.1.3.1): the sibling
// hashes from the leaf up to the root.
func Prove(leaves []Hash, i int) ([]Hash, error) {
	if i < 0 || i >= len(leaves) {
		return nil, fmt.Errorf("prove leaf %d of %d: out of range", i, len(leaves))
	}
	var path []Hash
	for len(leaves) > 1 {
		k := split(len(leaves))
		if i < k {
			path = append(path, Root(leaves[k:]))
			leaves = leaves[:k]
		} else {
			path = append(path, Root(leaves[:k]))
			leaves, i = leaves[k:], i-k
		}
	}
	// Built from the root down; a proof lists siblings from the leaf up.
	for a, b := 0, len(path)-1; a < b; a, b = a+1, b-1 {
		path[a], path[b] = path[b], path[a]
	}
	return path, nil
}

// Verify reports whether proof shows leaf to be leaf i of n under root (RFC 9162 §2.1.3.2). It
// never panics, whatever the inputs.
func Verify(root Hash, leaf Hash, i, n int, proof []Hash) bool {
	if i < 0 || i >= n || n > MaxLeaves || len(proof) > maxProofLen {
		return false
	}
	fn, sn := uint64(i), uint64(n-1)
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			r = hashNode(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = hashNode(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	return sn == 0 && r == root
}

// EncodeProof serialises a proof: uvarint count, then the hashes.
func EncodeProof(proof []Hash) []byte {
	b := binary.AppendUvarint(make([]byte, 0, 1+32*len(proof)), uint64(len(proof)))
	for _, h := range proof {
		b = append(b, h[:]...)
	}
	return b
}

// DecodeProof parses EncodeProof's output. It is bounded and total: a proof longer than the
// deepest tree, an overlong count, a truncated hash or trailing bytes are errors, never a panic.
func DecodeProof(b []byte) ([]Hash, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || k != len(binary.AppendUvarint(nil, n)) {
		// Overlong counts (0x80 0x00 for 0) are refused too: one proof, one encoding.
		return nil, errors.New("proof: bad length")
	}
	if n > maxProofLen {
		return nil, fmt.Errorf("proof: %d hashes, at most %d", n, maxProofLen)
	}
	b = b[k:]
	if uint64(len(b)) != n*32 {
		return nil, fmt.Errorf("proof: %d bytes for %d hashes", len(b), n)
	}
	out := make([]Hash, n)
	for i := range out {
		copy(out[i][:], b[32*i:])
	}
	return out, nil
}

// MarshalText writes the hash in hex, as JSON and snapshots show it.
func (h Hash) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%x", h[:]), nil }

// UnmarshalText reads MarshalText's hex.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("hash: %d hex digits, want 64", len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}
