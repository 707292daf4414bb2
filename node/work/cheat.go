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

var cheatMu sync.Mutex

// SetCheatRate makes this process's worker return wrong counts in one
// random block of the given fraction of its chunks (0 turns it off).
func SetCheatRate(rate float64) {
	if rate <= 0 {
		corrupt = nil
		return
	}
	corrupt = func(spec compute.JobSpec, done compute.Range, payload []byte) []byte {
		cheatMu.Lock()
		defer cheatMu.Unlock()
		if rand.Float64() >= rate {
			return payload
		}
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
		}
		return payload
	}
}
