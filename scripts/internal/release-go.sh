# Sourced by scripts/release and by every script that builds the program for a test: the release's
# build settings, in one place. A static build (CGO_ENABLED=0: it runs FROM scratch), the
# AVX2/AVX-512 kernels (GOEXPERIMENT=simd; harmless on other targets), no local paths and no VCS
# stamp (-trimpath, -buildvcs=false). Building everything for a target with the same settings lets
# one compile of the program serve vet, the tests' node binaries and the release: with a cold
# cache a compile takes about 100 s per target here. node/system_test.go goRelease says the same
# for the Go tests, which cannot source this file.
release_env=(CGO_ENABLED=0 GOEXPERIMENT=simd)
release_flags=(-trimpath -buildvcs=false)

# release_go VERB ARGS...: go VERB with the release's settings (GOOS/GOARCH from the environment).
release_go() { env "${release_env[@]}" go "$1" "${release_flags[@]}" "${@:2}"; }

# release_commit: the commit a release build stamps in (`hydra version`, hydra_build_info): the
# abbreviated hash of HEAD, with "-dirty" when the work tree differs from it (what `go build`
# would record as vcs.modified; the release builds record no VCS stamp of their own).
release_commit() {
  local c
  c="$(git rev-parse --short=12 HEAD 2>/dev/null)" || { echo unknown; return; }
  if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then c+="-dirty"; fi
  echo "$c"
}
