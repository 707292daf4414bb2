//go:build cheat

package cli

import (
	"flag"
	"fmt"
	"io"

	"github.com/hydra-compute/hydra/node/work"
)

// addCheatFlags registers --cheat-rate, in builds with the cheat tag only
// (tests of the audits): that fraction of this node's chunks returns wrong
// counts in a random block. Its warning goes to stderr (the flag set's own output is silenced).
func addCheatFlags(fs *flag.FlagSet, stderr io.Writer) func() error {
	rate := fs.Float64("cheat-rate", 0, "TEST BUILD ONLY: fraction of chunks returned with wrong counts in a random block")
	return func() error {
		if !(*rate >= 0 && *rate <= 1) { // NaN too: it would cheat on every chunk
			return usagef("--cheat-rate %g: want a fraction from 0 to 1", *rate)
		}
		if *rate > 0 {
			fmt.Fprintf(stderr, "hydra: this is a cheat build: %g of this node's chunks will be wrong\n", *rate)
		}
		work.SetCheatRate(*rate)
		return nil
	}
}
