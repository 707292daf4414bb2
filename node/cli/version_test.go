package cli

import (
	"runtime/debug"
	"testing"
)

// TestVersionFromBuildInfo: a build scripts/release did not stamp takes its version and commit
// from the toolchain's record (a `go build` in a git checkout, a `go install …@version`), in the
// release's form; a stamp wins over it. Before, every such build said "commit unknown".
func TestVersionFromBuildInfo(t *testing.T) {
	rev := "c2ed63c596c1413265e72e11e2852b517b697467"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name                  string
		main                  string
		settings              []debug.BuildSetting
		version, commit       string
		wantVersion, wantComm string
	}{
		{"go build, clean", "(devel)", vcs("false"), "0.1.0-dev", unstamped, "0.1.0-dev", "c2ed63c596c1"},
		{"go build, modified", "v0.0.0-20261206004927-c2ed63c596c1+dirty", vcs("true"), "0.1.0-dev", unstamped, "v0.0.0-20261206004927-c2ed63c596c1+dirty", "c2ed63c596c1-dirty"},
		{"go install @version", "v1.2.3", nil, "0.1.0-dev", unstamped, "v1.2.3", unstamped},
		{"no record", "", nil, "0.1.0-dev", unstamped, "0.1.0-dev", unstamped},
		{"release stamp", "(devel)", vcs("true"), "v0.2.0", "0123456789ab", "v0.2.0", "0123456789ab"},
	} {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/hydra-compute/hydra", Version: tc.main}, Settings: tc.settings}
		v, c := fromBuildInfo(bi, tc.version, tc.commit)
		if v != tc.wantVersion || c != tc.wantComm {
			t.Errorf("%s: version %q commit %q, want %q %q", tc.name, v, c, tc.wantVersion, tc.wantComm)
		}
	}
}
