// Package child is the compute child process and the node's side of it (docs/design.md §7).
//
// # Why a child process
//
// Compute must run at the lowest OS priority so the owner's programs win every contended
// cycle. It cannot do so inside the node: a starved low-priority thread that holds one of the Go
// runtime's Ps stalls the whole process (scheduler hand-off, preemption and GC stop-the-world
// wait on it), and raft would miss heartbeats exactly when the owner is busy. Measured on a
// 2-core machine with an owner's CPU-bound program on both cores and a 50 ms ticker standing in
// for raft heartbeats:
//
//	where compute runs                    ticker gap median   max
//	no compute (baseline)                       50 ms         54 ms
//	same process, threads at SCHED_IDLE      1,387 ms      1,760 ms
//	same process, threads at nice 19           278 ms        455 ms
//	child process at SCHED_IDLE                 50 ms         55 ms
//
// So the node (raft, libp2p, HTTP) keeps its normal priority and little CPU, and compute runs in
// a child: the same binary re-executed as `hydra __compute` (Subcommand), talking over its
// stdin and stdout. This is BOINC's split too: the client at normal priority, science
// applications at idle priority. The child imports compute (with compute/audit and
// compute/wasm: it builds commitments and runs WebAssembly tasks) and wire (frames) only: it
// knows nothing of raft, libp2p hosts or jobs beyond one task at a time.
//
// # Split of responsibilities
//
//	node (Runner, normal priority)        child (Main, lowest priority)
//	starts, restarts, kills the child     lowers its priority on every thread, says hello
//	one task at a time, relays progress   runs the kernels on --cpus workers, reports progress
//	stop / pause / resume / limits        stops at a finished prefix, applies the duty cycle
//	checks results, logs child's stderr   encodes payloads, measures compute seconds
//
// Priority: Linux SCHED_IDLE + nice 19 on every thread (each thread carries its own policy; the
// child lowers every thread in /proc/self/task until the list is stable, kernel workers lower
// their own locked thread, and the progress ticker sweeps again); Windows IDLE_PRIORITY_CLASS;
// macOS PRIO_DARWIN_BG (background) + nice 19. No cgo. The hello says what was obtained.
//
// --cpus N is the child's number of kernel workers (GOMAXPROCS is one more, so the goroutine
// reading the node's messages never waits for a worker to be preempted); --cpu-limit P is a
// CPU-time budget inside the child, as cpulimit and BOINC have it: the child may use P % of the
// CPU time of its --cpus cores, counted as the CPU time it really got, so time lost while it
// was preempted is made up (within a second) instead of lost; time with no task to compute is
// not (beyond 100 ms between two tasks), so a job starts at the limit. Workers that poll their Stop
// once the budget is spent rest until it has grown back: a steady child computes about P ms of
// every 100 ms. A worker notices a spent budget at its next poll (a few ms), so the measured
// share is a little above P.
//
// # Protocol
//
// Frames are wire.WriteFrame's (uvarint length, bytes). A frame is a kind byte, a uvarint
// length, a JSON header, and for a result the raw payload (no base64). Parent → child: run
// (task, spec, range, cpus, cpu limit), stop, config, exit. Child → parent: hello, progress
// (about every 250 ms), result (the finished prefix [start, start+done) and its payload: π hits,
// or the whole finished rows of a Mandelbrot range), error. Frames are bounded, every message
// is validated when decoded, and bad input is an error, never a panic. A child exits when its
// stdin ends (the node is gone) and, on Linux, is SIGKILLed by the kernel when the node dies.
//
// # Stopping loses nothing
//
// A stop (StopTask, Pause, or the ctx of Run) makes the child return the finished prefix. π
// blocks (2²⁰ samples, a few ms) are never cut, so no sample computed is lost; a Mandelbrot block
// (≤ 4096 pixels) is cut at the pixel, and the result keeps the whole rows of the prefix. The
// rest of the range can be run later as another task and the totals are exact.
//
// A pause (Pause) on Linux does not wait for the child to read a stop: it freezes the child with
// SIGSTOP, reads the blocks it finished from the log they share (shm.go), hands in the prefix
// and the ranges finished ahead of it (Result.Also), and kills the frozen child; the next Run
// starts another (docs/design.md §7, "Pausing at once").
package child
