package compute

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// overlongAt returns b with the uvarint at offset i rewritten one byte longer (its last byte
// gets the continuation bit and a 0x00 follows): the same value, not in its shortest form.
func overlongAt(t *testing.T, b []byte, i int) []byte {
	t.Helper()
	_, k := binary.Uvarint(b[i:])
	if k <= 0 {
		t.Fatalf("no uvarint at %d of % x", i, b)
	}
	out := slices.Clone(b[:i+k])
	out[i+k-1] |= 0x80
	return append(append(out, 0), b[i+k:]...)
}

// mandelPayloadOverlongDelta is EncodeMandelPayload with the first count's delta overlong.
func mandelPayloadOverlongDelta(counts []uint32) []byte {
	raw := []byte{}
	prev := int64(0)
	for i, c := range counts {
		d := int64(c) - prev
		u := uint64(d<<1) ^ uint64(d>>63)
		if i == 0 {
			raw = binary.AppendUvarint(raw, u)
			raw[len(raw)-1] |= 0x80
			raw = append(raw, 0)
		} else {
			raw = binary.AppendUvarint(raw, u)
		}
		prev = int64(c)
	}
	out := bytes.NewBuffer([]byte{payloadFormat})
	out.Write(binary.AppendUvarint(nil, uint64(len(counts))))
	w, _ := flate.NewWriter(out, flate.BestSpeed)
	w.Write(raw)
	w.Close()
	return out.Bytes()
}

// TestCheckCommitmentRefusesOverlong: the coordinator's check refuses a chunk result carrying a
// uvarint not in its shortest form, for every kind, though the value read is the same (the
// lenient ChunkLeaves, which the replicas' applies use, gives the canonical payload's leaves):
// a result has one encoding in the log. The canonical payload passes.
func TestCheckCommitmentRefusesOverlong(t *testing.T) {
	pr := Range{audit.PiBlock - 5, audit.PiBlock + 5}
	pspec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1 << 40, Seed: 3}}
	pi := EncodePiBlocksPayload([]uint64{3, 4})

	mr := Range{3, 11}
	mspec, counts := testMandel(t, mr)
	mandel := EncodeMandelPayload(counts)

	wr := Range{0, 100}
	wspec := JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: 40960, Reduce: ReduceConcat}}
	wasm := modulePayload(t, wspec.Wasm.Items, ReduceConcat, wr)

	for _, c := range []struct {
		name      string
		spec      JobSpec
		r         Range
		good, bad []byte
	}{
		{"pi total", pspec, pr, pi, overlongAt(t, pi, 1)},
		{"pi block count", pspec, pr, pi, overlongAt(t, pi, 2)},
		{"pi block hits", pspec, pr, pi, overlongAt(t, pi, 4)},
		{"mandelbrot count", mspec, mr, mandel, overlongAt(t, mandel, 1)},
		{"mandelbrot delta", mspec, mr, mandel, mandelPayloadOverlongDelta(counts)},
		{"wasm block count", wspec, wr, wasm, overlongAt(t, wasm, 9)},
		{"wasm block value", wspec, wr, wasm, overlongAt(t, wasm, 10)},
	} {
		leaves, v, err := ChunkLeaves(c.spec, c.r, c.good)
		if err != nil {
			t.Fatalf("%s: good payload: %v", c.name, err)
		}
		root := audit.Root(leaves)
		if err := CheckCommitment(c.spec, c.r, c.good, root); err != nil {
			t.Fatalf("%s: good payload refused: %v", c.name, err)
		}
		if l2, v2, err := ChunkLeaves(c.spec, c.r, c.bad); err != nil || audit.Root(l2) != root || v2 != v {
			t.Errorf("%s: the lenient read (applies) changed: %v", c.name, err)
		}
		if err := CheckCommitment(c.spec, c.r, c.bad, root); !errors.Is(err, wire.ErrOverlong) {
			t.Errorf("%s: overlong payload: %v, want ErrOverlong", c.name, err)
		}
	}
}

// A strict decoder reads every varint in its shortest form and refuses the same value one byte
// longer; a lenient one reads both.
func TestStrictDecoderVarints(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 64, -65, 1 << 40, -(1 << 40), 1<<63 - 1, -1 << 63} {
		short := binary.AppendVarint(nil, v)
		if got := (&decoder{b: short, strict: true}).varint(); got != v {
			t.Fatalf("strict read of %d's shortest form: %d", v, got)
		}
		if len(short) == binary.MaxVarintLen64 {
			continue // no longer form exists
		}
		long := overlongAt(t, short, 0)
		d := &decoder{b: long, strict: true}
		if d.varint(); !errors.Is(d.err, wire.ErrOverlong) {
			t.Fatalf("strict read of %d as % x: %v, want ErrOverlong", v, long, d.err)
		}
		if got := (&decoder{b: long}).varint(); got != v {
			t.Fatalf("lenient read of %d as % x: %d", v, long, got)
		}
	}
}
