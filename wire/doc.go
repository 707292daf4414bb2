// Package wire is how Hydra's messages are cut and how big they may be: the
// frame codec every stream protocol and the compute child's pipe share, and
// the size limits of frames, raft log entries, job-state commands and chunk
// results, declared once here so that each one nests inside the next (the
// compile-time checks in limits.go fail the build when they stop nesting).
//
// It is a leaf: it imports only the standard library, and every Hydra
// package may import it (compute included, which imports nothing else of
// Hydra's). It must never import another Hydra package.
package wire
