package cli

import (
	"runtime/debug"
	"sync"

	"github.com/hydra-compute/hydra/node"
)

// unstamped is node.Commit in a build that scripts/release did not stamp with -ldflags -X.
const unstamped = "unknown"

var stampOnce sync.Once

// stampFromBuildInfo fills node.Version and node.Commit, once, from the Go toolchain's own record
// of the build when no -ldflags stamp set them, so that `hydra version`, the node's status and its
// hydra_build_info metric name what was built: a `go install …@v1.2.3` carries its module version,
// a `go build` in a git checkout its revision and whether the tree was modified. The release
// builds record no VCS information (-buildvcs=false; this machine's GOFLAGS too): scripts/release
// stamps them itself, and this is the fallback for the rest.
func stampFromBuildInfo() {
	stampOnce.Do(func() {
		if bi, ok := debug.ReadBuildInfo(); ok {
			node.Version, node.Commit = fromBuildInfo(bi, node.Version, node.Commit)
		}
	})
}

// fromBuildInfo is the version and commit of a build given its build info and its -ldflags stamp
// (version, commit): the stamp when there is one, else what bi records, in the release's form
// (12 hex digits, "-dirty" when the tree differed from the commit).
func fromBuildInfo(bi *debug.BuildInfo, version, commit string) (string, string) {
	if commit != unstamped {
		return version, commit
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return version, commit
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return version, rev
}
