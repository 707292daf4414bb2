//go:build hydra_nochecks

package consensus

// checksOff: this is a benchmark build (hydra_nochecks) that treats every
// peer as a member and every proposer as authorized. Never ship it.
const checksOff = true
