//go:build cheat

package work

import (
	"math/rand/v2"
	"sync"

	"github.com/hydra-compute/hydra/compute"
)

// This file exists only in builds with the cheat tag (`go build -tags
// cheat`): test binaries that play a dishonest node, so that the audits can
// be seen to catch one. Release builds and CI's normal builds do not contain
// it, nor the --cheat-rate flag that sets it.

var cheat struct {
	sync.Mutex
	due float64 // chunks owed a wrong answer; one is due when it reaches 1
}

// SetCheatRate makes this process's worker return a wrong count in one
// random block of the given fraction of its chunks (0 turns it off): evenly
// spread from a random first one, so that a cheater at 0.1 cheats on
// exactly one chunk in ten and a test of it needs no luck.
func SetCheatRate(rate float64) {
	if rate <= 0 {
		corrupt = nil
		return
	}
	cheat.due = rand.Float64()
	corrupt = func(spec compute.JobSpec, done compute.Range, payload []byte) []byte {
		cheat.Lock()
		defer cheat.Unlock()
		if cheat.due += rate; cheat.due < 1 {
			return payload
		}
		cheat.due--
		switch spec.Kind {
		case compute.KindPi:
			bh, _, err := compute.DecodePiBlocks(payload, done)
			if err != nil || len(bh) == 0 {
				return payload
			}
			i := rand.IntN(len(bh))
			if bh[i] > 0 {
				bh[i]--
			} else {
				bh[i]++
			}
			return compute.EncodePiBlocksPayload(bh)
		case compute.KindMandelbrot:
			m := spec.Mandel
			counts, err := compute.DecodeMandelPayload(payload, int(done.Len())*m.Width, uint32(m.MaxIter))
			if err != nil || len(counts) == 0 {
				return payload
			}
			i := rand.IntN(len(counts))
			if counts[i] > 0 {
				counts[i]--
			} else {
				counts[i]++
			}
			return compute.EncodeMandelPayload(counts)
		case compute.KindWasm:
			blocks, err := compute.DecodeWasmBlocks(payload, spec.Wasm.Reduce)
			if err != nil || len(blocks) == 0 {
				return payload
			}
			blocks[rand.IntN(len(blocks))].Value ^= 1
			return compute.EncodeWasmBlocksPayload(spec.Wasm.Reduce, blocks)
		}
		return payload
	}
}
