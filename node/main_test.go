//go:build unix

package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hydra-compute/hydra/node/child"
)

// extraBuildDirs holds the directories of other builds of the node (the SIMD build) to remove at exit.
var extraBuildDirs []string

// TestMain lets the test binary act as the compute child process: in-process
// test nodes start it exactly as a real node starts its own binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == child.Subcommand {
		os.Exit(child.Main(os.Stdin, os.Stdout, os.Stderr))
	}
	code := m.Run()
	if binPath != "" { // built by hydraBinary for the system tests
		os.RemoveAll(filepath.Dir(binPath))
	}
	for _, d := range extraBuildDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
