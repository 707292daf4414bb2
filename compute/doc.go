// Package compute is Hydra's domain: the kernels (Monte-Carlo π and Mandelbrot, bit-exact to
// docs/design.md §4), the work-range model, reducers, the replicated job state applied by the raft FSM,
// and the scheduling policy that carves chunks for nodes.
//
// It is pure and deterministic. It imports nothing of Hydra's but compute/audit and the leaf
// package wire (size limits): no libp2p, no raft, no node code. It never reads the clock (time
// is an argument: "now time.Time" or a timestamp inside a command) and never touches the
// network or a file. The same code therefore runs in the compute child process, in the
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
//
// # Where each part lives
//
//	pi.go, mandel.go, kernel.go       the reference kernels, Stop, the parallel drivers
//	kernel_simd_amd64.go,             the vector kernels (GOEXPERIMENT=simd on amd64)
//	kernel_mandel_simd_amd64.go,
//	kernel_nosimd.go                  and the build without them
//	spec.go, range.go, reduce.go      job kinds and specs, ranges and range sets, reducers
//	payload.go, codec.go              result payloads; the strict binary codec under them
//	commitment.go, wasmblocks.go      commitments over a chunk's blocks (compute/audit builds them)
//	commands.go, commands_fixed.go    the job-state ops and their encodings
//	levels.go                         the protocol level each op needs (rolling upgrades)
//	jobstore.go                       JobStore: the state and Apply of most ops
//	jobstore_results.go               the Results op: checked, stored, counted once
//	jobstore_read.go, jobstore_work.go  reads: jobs, views, each node's work over every job
//	audits.go, audits_read.go         audits in the replicated state: challenges, outcomes
//	faults.go                         a WebAssembly module that failed on a node
//	history.go                        a job's bounded per-chunk history
//	results.go, storefail.go          ResultStore and its memory implementation; disk failures
//	snapshot.go                       Snapshot (SnapshotCapturer) and the payload records
//	snapshot_header.go                the jobs header written and read a job at a time
//	snapshot_restore.go               Restore and its consistency checks
//	sched.go, sched_rate.go,          Scheduler: leases, rates and chunk sizes, the tail,
//	sched_return.go                   backups, completion, failure and requeue
//	sim.go                            Simulate: the scheduler against modelled nodes
package compute
