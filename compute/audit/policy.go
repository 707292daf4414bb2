package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sort"
)

// State is a node's standing as the API and UI show it.
type State string

// A node is new until it has passed Policy.TrustAfter audits in a row, trusted after, and
// quarantined (no work, no vote) after Policy.QuarantineAfter failed audits until an admin
// clears it.
const (
	StateNew         State = "new"
	StateTrusted     State = "trusted"
	StateQuarantined State = "quarantined"
)

// Standing is a node's credibility for one kernel (job kind): its audits passed and failed, and
// how many it passed since its last failure.
type Standing struct {
	Passed uint64 `json:"passed"`
	Failed uint64 `json:"failed"`
	Streak uint64 `json:"streak"` // audits passed since the last failure (or since it joined)
}

// Policy is how often chunks are audited and how much of them: BOINC's adaptive replication
// applied to blocks. The zero value means the defaults (DefaultPolicy).
type Policy struct {
	// TrustAfter is how many audits in a row a node must pass before it is trusted (doubled for
	// each of its failures); until then every chunk of it is audited, every block of it
	// (default 10).
	TrustAfter uint64
	// Floor is the least probability that a trusted node's chunk is audited (default 0.05).
	Floor float64
	// TrustedShare is the share of a trusted node's chunk an audit recomputes, at least one
	// block (default 0.5). With Floor, the steady-state audit cost is about Floor×TrustedShare
	// of the work: 2.5 %.
	TrustedShare float64
	// QuarantineAfter is how many failed audits quarantine a node (default 3).
	QuarantineAfter uint64
}

// DefaultPolicy is the policy a cluster runs unless configured otherwise.
var DefaultPolicy = Policy{TrustAfter: 10, Floor: 0.05, TrustedShare: 0.5, QuarantineAfter: 3}

// WithDefaults fills the zero fields with DefaultPolicy's and clamps the others to sense.
func (p Policy) WithDefaults() Policy {
	d := DefaultPolicy
	if p.TrustAfter == 0 {
		p.TrustAfter = d.TrustAfter
	}
	if !(p.Floor > 0) || p.Floor > 1 {
		p.Floor = d.Floor
	}
	if !(p.TrustedShare > 0) || p.TrustedShare > 1 {
		p.TrustedShare = d.TrustedShare
	}
	if p.QuarantineAfter == 0 {
		p.QuarantineAfter = d.QuarantineAfter
	}
	return p
}

// need is how many audits in a row a standing must pass to be trusted: TrustAfter, doubled for
// each failure since the last trust reset (up to 16×), so that a node caught once cannot hide
// for long behind a short run of honest chunks.
func (p Policy) need(s Standing) uint64 {
	return p.TrustAfter << min(s.Failed, 4)
}

// Trusted reports whether a standing has earned trust.
func (p Policy) Trusted(s Standing) bool { p = p.WithDefaults(); return s.Streak >= p.need(s) }

// Probability is the chance that a chunk of a node with this standing is audited: 1 while it is
// new, then about 1/(consecutive passes), never below the floor.
func (p Policy) Probability(s Standing) float64 {
	p = p.WithDefaults()
	if s.Streak < p.need(s) {
		return 1
	}
	return max(1/float64(s.Streak), p.Floor)
}

// Share is the share of a chunk's blocks an audit of a node with this standing recomputes: all
// of them while it is new, TrustedShare once it is trusted.
func (p Policy) Share(s Standing) float64 {
	p = p.WithDefaults()
	if s.Streak < p.need(s) {
		return 1
	}
	return p.TrustedShare
}

// Seed is the randomness of one audit decision: it comes from the raft log (a value the
// coordinator drew after the chunk's commitment was committed), so every replica decides alike
// and the worker, who sent its commitment before the draw, cannot predict it.
type Seed [32]byte

// rng is a counter-mode SHA-256 stream: deterministic from its key on every platform.
type rng struct {
	key   []byte
	ctr   uint64
	buf   [32]byte
	avail int
}

func newRNG(seed Seed, job string, chunkStart uint64) *rng {
	k := make([]byte, 0, 32+len(job)+20)
	k = append(k, seed[:]...)
	k = binary.AppendUvarint(k, uint64(len(job)))
	k = append(k, job...)
	k = binary.AppendUvarint(k, chunkStart)
	return &rng{key: k}
}

func (r *rng) u64() uint64 {
	if r.avail < 8 {
		h := sha256.New()
		h.Write(r.key)
		var c [8]byte
		binary.LittleEndian.PutUint64(c[:], r.ctr)
		h.Write(c[:])
		h.Sum(r.buf[:0])
		r.ctr++
		r.avail = 32
	}
	v := binary.LittleEndian.Uint64(r.buf[32-r.avail:])
	r.avail -= 8
	return v
}

// float is uniform in [0, 1) with 53 bits.
func (r *rng) float() float64 { return float64(r.u64()>>11) / (1 << 53) }

// below is uniform in [0, n) for n > 0 (rejection sampling: no modulo bias).
func (r *rng) below(n uint64) uint64 {
	limit := math.MaxUint64 - math.MaxUint64%n
	for {
		if v := r.u64(); v < limit {
			return v % n
		}
	}
}

// Choose decides whether the chunk starting at chunkStart of job, committed by a node with
// this standing and cut into nleaves blocks, is audited, and if so which blocks are recomputed:
// sorted leaf indexes, at least one, Share of them. The same arguments give the same answer on
// every replica; nothing else goes in.
func (p Policy) Choose(seed Seed, job string, chunkStart uint64, s Standing, nleaves int) (audit bool, blocks []int) {
	if nleaves <= 0 {
		return false, nil
	}
	r := newRNG(seed, job, chunkStart)
	if r.float() >= p.Probability(s) {
		return false, nil
	}
	k := min(max(int(math.Ceil(p.Share(s)*float64(nleaves))), 1), nleaves)
	if k == nleaves {
		blocks = make([]int, nleaves)
		for i := range blocks {
			blocks[i] = i
		}
		return true, blocks
	}
	// Floyd's sampling: k distinct indexes, k draws.
	picked := make(map[int]bool, k)
	for j := nleaves - k; j < nleaves; j++ {
		t := int(r.below(uint64(j + 1)))
		if picked[t] {
			t = j
		}
		picked[t] = true
	}
	for i := range picked {
		blocks = append(blocks, i)
	}
	sort.Ints(blocks)
	return true, blocks
}
