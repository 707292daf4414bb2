package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestReleaseBuildNamesItsCommit: a binary scripts/release builds (this machine's target only)
// says in `hydra version` the commit `git rev-parse` gives, "-dirty" when the tree differs from
// it. The release builds record no VCS stamp (-buildvcs=false), so the script stamps the commit
// itself; it stamped the full hash and never said that the tree was modified. With the build
// cache warm (scripts/test builds every target with the release's settings first) it only links.
func TestReleaseBuildNamesItsCommit(t *testing.T) {
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", args...).Output()
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	want := git("rev-parse", "--short=12", "HEAD")
	if git("status", "--porcelain") != "" {
		want += "-dirty"
	}
	arch := runtime.GOARCH
	if arch == "arm" {
		arch = "armv7" // the only 32-bit ARM target, named so by scripts/release
	}
	dist := t.TempDir()
	cmd := exec.Command("scripts/release", "v0.0.0-test")
	cmd.Env = append(os.Environ(), "DIST="+dist, "TARGETS="+runtime.GOOS+"/"+arch, "SOURCE_DATE_EPOCH=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, out)
	}
	exe := filepath.Join(dist, "hydra-v0.0.0-test-"+runtime.GOOS+"-"+arch)
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	out, err := exec.Command(exe, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", exe, err)
	}
	if got, w := strings.TrimSpace(string(out)), "hydra v0.0.0-test (commit "+want+", built 1970-01-01T00:00:00Z)"; got != w {
		t.Fatalf("hydra version says %q, want %q", got, w)
	}
}

// TestReleaseBuildIgnoresTheBuildersGoEnv: the Go settings of whoever runs scripts/release stay
// out of the release. With GOFLAGS=-tags=hydra_nochecks (the benchmark build with the membership
// checks off, docs/security.md) and GOAMD64=v3 in the environment, the script built a binary with
// the checks off, and for amd64 one that refuses to start on an x86-64 without AVX2 (docs/install.md
// promises any x86-64), and said nothing.
func TestReleaseBuildIgnoresTheBuildersGoEnv(t *testing.T) {
	arch := runtime.GOARCH
	if arch == "arm" {
		arch = "armv7" // the only 32-bit ARM target, named so by scripts/release
	}
	dist := t.TempDir()
	cmd := exec.Command("scripts/release", "v0.0.0-env")
	cmd.Env = append(os.Environ(), "DIST="+dist, "TARGETS="+runtime.GOOS+"/"+arch, "SOURCE_DATE_EPOCH=0",
		"GOFLAGS=-tags=hydra_nochecks", "GOAMD64=v3", "GOARM64=v9.0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, out)
	}
	exe := filepath.Join(dist, "hydra-v0.0.0-env-"+runtime.GOOS+"-"+arch)
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	out, err := exec.Command("go", "version", "-m", exe).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", exe, err)
	}
	info := string(out)
	for _, bad := range []string{"-tags=", "GOAMD64=v3", "GOARM64=v9"} {
		if strings.Contains(info, bad) {
			t.Errorf("the release build carries the environment's %s:\n%s", bad, info)
		}
	}
}
