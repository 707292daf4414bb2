//go:build !unix

package node

// giveToDirOwner does nothing here: files a Windows administrator creates in a data directory
// inherit its access rules (see recover_unix.go for why Unix needs it).
func giveToDirOwner(string) error { return nil }
