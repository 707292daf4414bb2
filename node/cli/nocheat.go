//go:build !cheat

package cli

import "flag"

// addCheatFlags adds nothing: --cheat-rate exists only in builds with the
// cheat tag (cheat.go).
func addCheatFlags(*flag.FlagSet) func() error { return func() error { return nil } }
