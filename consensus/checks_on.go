//go:build !hydra_nochecks

package consensus

// checksOff disables the membership checks (Access, authorize) in a build
// with the hydra_nochecks tag, which exists only so that
// scripts/bench-security-throughput can measure what the checks cost on
// chunk throughput in the same run. Releases never carry it.
const checksOff = false
