// Package compute is Hydra's domain: the kernels (Monte-Carlo π and Mandelbrot, bit-exact to
// docs/design.md §4), the work-range model, reducers, the replicated job state applied by the raft FSM,
// and the scheduling policy that carves chunks for nodes.
//
// It is pure and deterministic. It imports nothing of Hydra's but the leaf package wire (size
// limits) — no libp2p, no raft, no node code —
// never reads the clock (time is an argument: "now time.Time" or a timestamp inside a command) and
// never touches the network. The same code therefore runs in the compute child process, in the
// coordinator, in unit tests with a fake clock and in the scheduling simulator.
//
// # Kernels
//
// [PiHits] and [MandelRows] are the reference-exact kernels; [PiHitsParallel] and [MandelPixels]
// split a range over several goroutines and poll a [Stop] so that pausing loses nothing: they
// return the finished prefix. The portable (scalar Go) kernels are always built. Built with
// GOEXPERIMENT=simd on amd64, vector kernels using simd/archsimd are chosen at run time when the
// CPU has the instructions (AVX2, AVX-512), after a start-up self-check against the portable
// kernel; [KernelPath] says which runs. Every arithmetic step of the Mandelbrot iteration is
// rounded on its own (explicit float64 conversions forbid FMA fusion), so amd64, arm64 and the
// vector paths produce the same bits.
//
// # Job state
//
// [JobStore] holds the replicated facts (docs/design.md §2): jobs, accepted ranges, per-node
// contributions. Result payloads, compressed, go to a [ResultStore]
// (the node's is on disk, internal/resultstore; [NewMemResults] keeps them in memory), so that
// this package opens no files. It is driven through
// [JobStore.Apply] with the ops [OpSubmit] … and their binary encoders, so live applies and
// log replay run one code path. A range is counted at most once: a result whose range overlaps
// an accepted range is rejected.
//
// # Scheduling
//
// [Scheduler] is the coordinator's policy (docs/design.md §3) as a state machine with time passed in:
// rate-sized chunks, probe chunks, guided self-scheduling at the tail, backup copies, requeue on
// node loss and deadlines, fair sharing between jobs by priority. It is leader-memory soft state;
// after a leader change it is rebuilt from the job state (all ranges minus accepted ranges).
package compute
