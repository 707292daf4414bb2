//go:build !cheat

package cli

import (
	"flag"
	"io"
)

// addCheatFlags adds nothing: --cheat-rate exists only in builds with the
// cheat tag (cheat.go).
func addCheatFlags(*flag.FlagSet, io.Writer) func() error { return func() error { return nil } }
