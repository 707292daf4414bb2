//go:build !unix && !windows

package node

import "os"

// lockFile locks nothing where the OS offers no file lock: the raft state's own lock still
// refuses a second node, later.
func lockFile(*os.File) error { return nil }
