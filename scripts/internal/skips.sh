# Sourced by scripts/test and scripts/internal/codestats: which go test skips a run may have.
# Nothing passes by skipping (docs/design.md §9): a test may skip only for what this machine
# lacks, and in CI (HYDRA_REQUIRE_ALL=1, everything installed) for nothing.

# binfmt_ready prints 1 if this machine can run arm64 binaries through qemu-user (binfmt_misc,
# registered by scripts/test), else 0.
binfmt_ready() {
  if [ "$(uname -m)" = x86_64 ] && [ "$(id -u)" = 0 ] && [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    echo 1
  else
    echo 0
  fi
}

# allowed_skips BINFMT prints the skips allowed here, one "PKG.TEST" regular expression a line
# (testsum -allow); none with HYDRA_REQUIRE_ALL=1. BINFMT is 1 when arm64 binaries run.
allowed_skips() {
  [ "${HYDRA_REQUIRE_ALL:-0}" = 1 ] && return 0
  { [ "$(id -u)" = 0 ] && command -v ip >/dev/null; } || echo '^p2p\.(TestMDNSInNamespace|TestAddrWatchSurvivesOverflow)$'
  { command -v node >/dev/null && [ -f p2p/interop/node_modules/libp2p/package.json ]; } ||
    echo '^p2p/interop\.TestJSLibp2pDialsPingsIdentifies$'
  [ "$1" = 1 ] || echo '^node\.TestSystem_MixedArchitectureExact$'
  { [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo; } || echo '^node\.TestSystem_SIMDCluster$'
  return 0
}
