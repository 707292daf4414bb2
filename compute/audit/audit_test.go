package audit

import (
	"bytes"
	"crypto/sha256"
	"math"
	"testing"
	"time"
)

func leafSet(n int) []Hash {
	out := make([]Hash, n)
	for i := range out {
		out[i] = PiLeaf(uint64(i)*PiBlock, uint64(i+1)*PiBlock, uint64(i*7))
	}
	return out
}

func TestRootShape(t *testing.T) {
	l := leafSet(3)
	if Root(nil) != sha256.Sum256(nil) {
		t.Fatal("root of no leaves is not the empty hash")
	}
	if Root(l[:1]) != l[0] {
		t.Fatal("root of one leaf is not the leaf")
	}
	// RFC 9162: three leaves split 2 + 1.
	want := hashNode(hashNode(l[0], l[1]), l[2])
	if Root(l) != want {
		t.Fatal("root of three leaves does not have the RFC 9162 shape")
	}
}

func TestProveVerifyEveryLeaf(t *testing.T) {
	for n := 1; n <= 70; n++ {
		l := leafSet(n)
		root := Root(l)
		for i := range n {
			p, err := Prove(l, i)
			if err != nil {
				t.Fatal(err)
			}
			if !Verify(root, l[i], i, n, p) {
				t.Fatalf("n=%d i=%d: proof does not verify", n, i)
			}
			q, err := DecodeProof(EncodeProof(p))
			if err != nil || len(q) != len(p) {
				t.Fatalf("n=%d i=%d: proof round trip: %v", n, i, err)
			}
			if !Verify(root, l[i], i, n, q) {
				t.Fatalf("n=%d i=%d: decoded proof does not verify", n, i)
			}
			// A wrong leaf, index or size does not verify.
			bad := l[i]
			bad[0] ^= 1
			if Verify(root, bad, i, n, p) {
				t.Fatalf("n=%d i=%d: a changed leaf verifies", n, i)
			}
			if n > 1 && Verify(root, l[i], (i+1)%n, n, p) {
				t.Fatalf("n=%d i=%d: the proof verifies at another index", n, i)
			}
			if len(p) > 0 {
				p2 := append([]Hash(nil), p...)
				p2[len(p2)-1][3] ^= 0x80
				if Verify(root, l[i], i, n, p2) {
					t.Fatalf("n=%d i=%d: a changed proof verifies", n, i)
				}
			}
		}
	}
	if _, err := Prove(leafSet(2), 2); err == nil {
		t.Fatal("proof of a leaf out of range")
	}
}

func TestRootChangesWithAnyLeaf(t *testing.T) {
	l := leafSet(37)
	root := Root(l)
	for i := range l {
		m := append([]Hash(nil), l...)
		m[i][31] ^= 1
		if Root(m) == root {
			t.Fatalf("changing leaf %d keeps the root", i)
		}
	}
}

func TestLeavesDistinct(t *testing.T) {
	if PiLeaf(0, 10, 5) == PiLeaf(0, 10, 6) || PiLeaf(0, 10, 5) == PiLeaf(1, 10, 5) {
		t.Fatal("π leaves of different blocks or hits are equal")
	}
	if MandelLeaf(3, []uint32{1, 2}) == MandelLeaf(3, []uint32{1, 3}) || MandelLeaf(3, []uint32{1}) == MandelLeaf(4, []uint32{1}) {
		t.Fatal("Mandelbrot leaves of different rows or counts are equal")
	}
}

func TestPiBlocks(t *testing.T) {
	for _, c := range [][2]uint64{{0, 1}, {0, PiBlock}, {5, PiBlock + 5}, {PiBlock - 1, 3*PiBlock + 1}, {7 * PiBlock, 9 * PiBlock}} {
		bs, err := PiBlocks(c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(bs)) != PiLeafCount(c[0], c[1]) {
			t.Fatalf("%v: %d blocks, count says %d", c, len(bs), PiLeafCount(c[0], c[1]))
		}
		at := c[0]
		for _, b := range bs {
			if b.Start != at || b.End <= b.Start || b.End-b.Start > PiBlock || (b.End != c[1] && b.End%PiBlock != 0) {
				t.Fatalf("%v: bad block %v", c, b)
			}
			at = b.End
		}
		if at != c[1] {
			t.Fatalf("%v: blocks end at %d", c, at)
		}
	}
	if _, err := PiBlocks(5, 5); err == nil {
		t.Fatal("blocks of an empty range")
	}
	if _, err := PiBlocks(0, (MaxLeaves+1)*PiBlock); err == nil {
		t.Fatal("more than MaxLeaves blocks accepted")
	}
	bs, _ := PiBlocks(0, 6*PiBlock)
	sp := Spans(bs, []int{0, 1, 3, 5, 9})
	if len(sp) != 3 || sp[0] != (Block{0, 2 * PiBlock}) || sp[1] != (Block{3 * PiBlock, 4 * PiBlock}) || sp[2] != (Block{5 * PiBlock, 6 * PiBlock}) {
		t.Fatalf("spans %v", sp)
	}
}

// TestPiBlocksAtTheTopOfTheRange: a range in the last block of the uint64 range (a hostile
// worker's result names any range; the coordinator cuts it before it checks the job) has its
// blocks. The next boundary after that block wrapped to 0, and PiBlocks started over from
// sample 0, appending blocks until memory ran out: the leader hung in CheckCommitment.
func TestPiBlocksAtTheTopOfTheRange(t *testing.T) {
	for _, c := range [][2]uint64{
		{math.MaxUint64 - PiBlock - 5, math.MaxUint64},
		{math.MaxUint64 - 3, math.MaxUint64},
		{math.MaxUint64 - 2*PiBlock, math.MaxUint64 - 1},
	} {
		got := make(chan []Block, 1)
		go func() {
			bs, err := PiBlocks(c[0], c[1])
			if err != nil {
				t.Error(err)
			}
			got <- bs
		}()
		var bs []Block
		select {
		case bs = <-got:
		case <-time.After(10 * time.Second): // a deadline, not a synchronisation: it takes microseconds
			t.Fatalf("%v: PiBlocks still running after 10 s", c)
		}
		if uint64(len(bs)) != PiLeafCount(c[0], c[1]) {
			t.Fatalf("%v: %d blocks, count says %d", c, len(bs), PiLeafCount(c[0], c[1]))
		}
		at := c[0]
		for _, b := range bs {
			if b.Start != at || b.End <= b.Start || b.End-b.Start > PiBlock {
				t.Fatalf("%v: bad block %v", c, b)
			}
			at = b.End
		}
		if at != c[1] {
			t.Fatalf("%v: blocks end at %d", c, at)
		}
	}
}

func TestPolicyProbability(t *testing.T) {
	p := DefaultPolicy
	if p.Probability(Standing{}) != 1 || p.Share(Standing{Streak: 9}) != 1 {
		t.Fatal("a new node is not fully audited on every chunk")
	}
	if p.Trusted(Standing{Streak: 9}) || !p.Trusted(Standing{Streak: 10}) {
		t.Fatal("trust threshold")
	}
	if got := p.Probability(Standing{Streak: 10}); got != 0.1 {
		t.Fatalf("probability at 10 passes %g, want 0.1", got)
	}
	if got := p.Probability(Standing{Streak: 1000}); got != p.Floor {
		t.Fatalf("probability at 1000 passes %g, want the floor", got)
	}
	if p.Trusted(Standing{Streak: 15, Failed: 1}) || !p.Trusted(Standing{Streak: 20, Failed: 1}) || p.Probability(Standing{Streak: 30, Failed: 2}) != 1 {
		t.Fatal("a failure does not raise the bar for trust")
	}
	if (Policy{}).WithDefaults() != DefaultPolicy {
		t.Fatal("zero policy is not the default")
	}
}

func TestChooseDeterministicAndFair(t *testing.T) {
	p := DefaultPolicy
	var seed Seed
	seed[0] = 9
	// New node: always audited, every block.
	a, b := p.Choose(seed, "j", 0, Standing{}, 7)
	if !a || len(b) != 7 {
		t.Fatalf("new node: audit %v blocks %v", a, b)
	}
	// Trusted: audited at about the floor rate, half the blocks, deterministic.
	trusted := Standing{Streak: 500}
	audits := 0
	counts := make([]int, 10)
	const trials = 20000
	for i := range trials {
		a1, b1 := p.Choose(seed, "job", uint64(i), trusted, 10)
		a2, b2 := p.Choose(seed, "job", uint64(i), trusted, 10)
		if a1 != a2 || len(b1) != len(b2) {
			t.Fatal("Choose is not deterministic")
		}
		if !a1 {
			continue
		}
		audits++
		if len(b1) != 5 {
			t.Fatalf("trusted share: %d blocks of 10", len(b1))
		}
		for j, x := range b1 {
			if j > 0 && b1[j-1] >= x {
				t.Fatalf("blocks not sorted and distinct: %v", b1)
			}
			counts[x]++
		}
	}
	if rate := float64(audits) / trials; math.Abs(rate-p.Floor) > 0.01 {
		t.Fatalf("audit rate %g, want about %g", rate, p.Floor)
	}
	for i, c := range counts {
		if want := float64(audits) / 2; math.Abs(float64(c)-want) > 0.2*want {
			t.Fatalf("block %d chosen %d times of %d audits: not uniform", i, c, audits)
		}
	}
	// Another seed gives other decisions.
	seed2 := seed
	seed2[1] = 1
	same := 0
	for i := range 200 {
		a1, _ := p.Choose(seed, "job", uint64(i), Standing{Streak: 10}, 4)
		a2, _ := p.Choose(seed2, "job", uint64(i), Standing{Streak: 10}, 4)
		if a1 == a2 {
			same++
		}
	}
	if same == 200 {
		t.Fatal("the seed does not change the decisions")
	}
	if a, _ := p.Choose(seed, "j", 0, Standing{}, 0); a {
		t.Fatal("a chunk without leaves audited")
	}
}

func FuzzDecodeProof(f *testing.F) {
	p, _ := Prove(leafSet(9), 4)
	f.Add(EncodeProof(p))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := DecodeProof(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeProof(q), b) {
			t.Fatalf("decode/encode is not the identity for %x", b)
		}
		Verify(Root(leafSet(3)), leafSet(1)[0], 0, 3, q)
	})
}

func FuzzVerify(f *testing.F) {
	f.Add(3, 5, []byte{1, 2})
	f.Add(-1, 0, []byte{})
	f.Add(0, 1<<20, []byte{9})
	f.Fuzz(func(t *testing.T, i, n int, junk []byte) {
		var proof []Hash
		for len(junk) > 0 && len(proof) < 40 {
			var h Hash
			copy(h[:], junk)
			proof = append(proof, h)
			junk = junk[min(len(junk), 32):]
		}
		// Must not panic, and random proofs do not verify.
		if Verify(Root(leafSet(5)), leafSet(5)[2], i, n, proof) {
			l := leafSet(5)
			good, _ := Prove(l, 2)
			if i != 2 || n != 5 || len(proof) != len(good) {
				t.Fatalf("a random proof verified: i=%d n=%d", i, n)
			}
		}
	})
}

// TestMandelLeafBytes pins what a Mandelbrot leaf hashes (the leaf prefix, 'm', the row as a
// uvarint, each count as a little-endian uint32): nodes of every version must agree on it. A
// reused buffer (MandelLeafBuf) hashes the same bytes whatever row it held before.
func TestMandelLeafBytes(t *testing.T) {
	want := sha256.Sum256([]byte{0x00, 'm', 0x96, 0x01, 1, 0, 0, 0, 4, 3, 2, 1})
	if got := MandelLeaf(150, []uint32{1, 0x01020304}); got != Hash(want) {
		t.Fatalf("leaf %x, want %x", got, want)
	}
	var buf []byte
	for _, c := range []struct {
		row    uint64
		counts []uint32
	}{{1 << 40, []uint32{7, 8, 9, 10, 11}}, {150, []uint32{1, 0x01020304}}, {2, nil}, {150, []uint32{1, 0x01020304}}} {
		if got, w := MandelLeafBuf(&buf, c.row, c.counts), MandelLeaf(c.row, c.counts); got != w {
			t.Fatalf("row %d: reused buffer gives %x, a fresh one %x", c.row, got, w)
		}
	}
}
