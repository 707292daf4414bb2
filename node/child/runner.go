package child

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// Timeouts of the parent side. A child at idle priority on a machine its owner keeps busy may
// get no CPU for a while, so both are generous: killing a child that was only starved would
// throw its finished prefix away.
const (
	helloTimeout = 30 * time.Second // from spawn to hello
	exitTimeout  = 2 * time.Second  // from exit to the process gone, then SIGKILL
)

// stopTimeout is the time from stop to the prefix result, then SIGKILL (a variable: tests
// shorten it).
var stopTimeout = 30 * time.Second

// Errors of Runner. A crash of the child is not one of them: Run wraps it in a plain error
// (the child is restarted on the next Run).
var (
	ErrBusy   = errors.New("compute child busy: Run calls must be sequential")
	ErrClosed = errors.New("compute runner closed")
)

// Config configures a Runner.
type Config struct {
	// Exe is the program to run as the child (default os.Executable(): the node's own binary).
	Exe string
	// Args are its arguments (default {"__compute"}, the hidden subcommand that calls Main).
	Args []string
	// Env is added to the node's environment for the child (tests use it to make the test
	// binary act as the child).
	Env []string
	// CPUs is the child's GOMAXPROCS and kernel worker count (--cpus; 0: all the machine's).
	CPUs int
	// CPULimit is the duty cycle in percent, 1–100 (--cpu-limit; 0: 100).
	CPULimit int
	// Logger receives the runner's events and the child's stderr (default slog.Default()).
	Logger *slog.Logger
	// IdleExit, if > 0, stops the child once it has had no task for this long; the next Run
	// starts a new one (about 50 ms). An idle node then costs no child process: the child
	// is the same binary as the node, and its package initialisation alone makes it about
	// 20 MB resident. 0 keeps the child for the runner's lifetime.
	IdleExit time.Duration
}

// Chunk is one chunk as the child computes it: units Range of the job Spec. ID is the caller's (a lease ID);
// the same ID may be run again for the rest of a range after a stop.
type Chunk struct {
	ID    uint64
	Spec  compute.JobSpec
	Range compute.Range
	// Spans, if set (π without chunk_units only), are disjoint ranges in order that Range covers
	// exactly: the task computes them alone, one after the other, and its result has a part per
	// span finished (Done the first, Also the rest). A node's audits of one job run so, as one
	// task.
	Spans []compute.Range
}

// Result is a task's finished prefix: Done = [Range.Start, Range.Start+done) and its encoded
// result (compute.EncodePiBlocksPayload, or compute.EncodeMandelPayload of Done's whole rows).
// ComputeSeconds is the CPU time (user + system, all threads) the child used while the task
// ran — what the machine really gave, so a duty-cycled or starved node is not credited with
// time it did not compute; where the OS cannot tell, it is wall time × workers.
type Result struct {
	ID      uint64
	Done    compute.Range
	Payload []byte
	// Root is Done's commitment (compute.Commitment of Payload) as the child computed it, or
	// zero where it did not: the node then computes it from the payload.
	Root           audit.Hash
	ComputeSeconds float64
	// Also are finished ranges of the task beyond Done, each with its payload, in order: the
	// other chunks of a job with chunk_units (the result is cut at its chunks, Done the first),
	// or after a pause that froze the child, blocks other kernel workers finished ahead of the
	// first unfinished one. Hand them in with Done: nothing the child finished is lost.
	Also []Part
}

// Runner is the node's side of the compute child (docs/design.md §7): it starts the child, hands
// it one task at a time, relays progress, stops and pauses it, and restarts it after a crash.
//
// Concurrency: Run computes one task at a time (the worker keeps one chunk in hand and one
// queued, so its Run calls are sequential; a Run while another runs returns ErrBusy at once).
// StopTask, Pause, Resume, SetLimits, Hello and Close may be called from any goroutine, during
// a Run.
type Runner struct {
	cfg Config
	log *slog.Logger

	runMu sync.Mutex // held by Run
	seq   uint64     // wire task ids, under runMu: a stale message never matches a new task

	mu       sync.Mutex
	p        *proc
	cpus     int
	limit    int
	paused   bool
	resumed  chan struct{} // closed by Resume
	stopTask chan struct{} // the running task's stop signal, closed by StopTask/Pause
	closed   bool
	idle     *time.Timer // IdleExit's timer, armed while no Run runs
	idleGen  uint64      // counts arms and disarms: a stale timer does nothing
	running  bool        // a Run is in progress (IdleExit waits)
	last     Hello       // the hello of the last child started
}

// Start starts the compute child and waits for its hello; ctx bounds that start only (the
// child lives until Close). The child is restarted by Run if it dies.
func Start(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("compute child: find own executable: %w", err)
		}
		cfg.Exe = exe
	}
	if cfg.Args == nil {
		cfg.Args = []string{Subcommand}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := checkLimits(cfg.CPUs, cfg.CPULimit); err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, cpus: cfg.CPUs, limit: cfg.CPULimit}
	if _, err := r.child(ctx); err != nil {
		return nil, err
	}
	r.armIdle()
	return r, nil
}

// armIdle starts the IdleExit countdown (no Run runs now).
func (r *Runner) armIdle() {
	if r.cfg.IdleExit <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = false
	if r.idle != nil {
		r.idle.Stop()
	}
	r.idleGen++
	gen := r.idleGen
	r.idle = time.AfterFunc(r.cfg.IdleExit, func() { r.idleExit(gen) })
}

// disarmIdle stops the IdleExit countdown (a Run starts).
func (r *Runner) disarmIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = true
	r.idleGen++
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
}

// idleExit stops the child if no Run has started since countdown gen began. It does not
// wait for Run's lock: a Run that starts meanwhile simply starts a new child.
func (r *Runner) idleExit(gen uint64) {
	r.mu.Lock()
	p := r.p
	if gen != r.idleGen || r.running || r.closed || p == nil {
		r.mu.Unlock()
		return
	}
	r.p, r.idle = nil, nil
	r.mu.Unlock()
	r.log.Debug("compute child stopped: idle", "pid", p.hello.PID, "after", r.cfg.IdleExit)
	p.shutdown()
}

// Kernel returns the kernel path the last child started reported (the child may have exited
// since: see Config.IdleExit), or "" before any started.
func (r *Runner) Kernel() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.KernelPath
}

func checkLimits(cpus, limit int) error {
	if cpus < 0 || cpus > maxCPUs {
		return fmt.Errorf("cpus %d outside 0–%d", cpus, maxCPUs)
	}
	if limit < 0 || limit > 100 {
		return fmt.Errorf("cpu limit %d%% outside 1–100", limit)
	}
	return nil
}

// Hello returns what the running child reported at start (priority, kernel path, pid), and
// false when no child runs (it died or was killed, and has not been restarted yet).
func (r *Runner) Hello() (Hello, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil || !r.p.usable() {
		return Hello{}, false
	}
	return r.p.hello, true
}

// SetLimits changes --cpus and --cpu-limit; the running task follows at once (the duty cycle
// within one period; a new worker count after the workers finish their blocks). 0 means all
// CPUs and no limit respectively.
func (r *Runner) SetLimits(cpus, cpuLimit int) error {
	if err := checkLimits(cpus, cpuLimit); err != nil {
		return err
	}
	r.mu.Lock()
	r.cpus, r.limit = cpus, cpuLimit
	p := r.p
	r.mu.Unlock()
	if p != nil {
		c, l := effective(cpus, cpuLimit)
		_ = p.send(message{kind: kindConfig, h: header{CPUs: c, CPULimit: l}})
	}
	return nil
}

// effective turns the "0 means default" settings into what the child runs: all CPUs (at most
// MaxCPUs: the child refuses a run for more, and on a larger machine every task would wait for
// its stop deadline), 100 %.
func effective(cpus, limit int) (int, int) {
	if cpus == 0 {
		cpus = min(numCPU(), maxCPUs)
	}
	if limit == 0 {
		limit = 100
	}
	return cpus, limit
}

// StopTask stops the running task, if any: its Run returns the finished prefix (nothing
// computed is lost). It does not prevent the next Run; Pause does.
func (r *Runner) StopTask() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *Runner) stopLocked() {
	if r.stopTask != nil {
		close(r.stopTask)
		r.stopTask = nil
	}
}

// Pause stops the running task (its Run returns the finished prefix) and holds back new ones:
// a Run while paused waits for Resume or for its ctx. This is what the owner policy calls.
func (r *Runner) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.paused {
		r.paused = true
		r.resumed = make(chan struct{})
	}
	r.stopLocked()
}

// Resume lets tasks run again after Pause.
func (r *Runner) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused {
		r.paused = false
		close(r.resumed)
	}
}

// Paused reports whether the runner is paused.
func (r *Runner) Paused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused
}

// Close stops the child (exit, then SIGKILL if it lingers) and waits for it. Run returns
// ErrClosed afterwards. Close is idempotent.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	p := r.p
	r.p = nil
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	r.stopLocked()
	if r.paused {
		r.paused = false
		close(r.resumed)
	}
	r.mu.Unlock()
	if p != nil {
		p.shutdown()
	}
	return nil
}

// child returns the running child, starting one if there is none (first call, or after a crash).
func (r *Runner) child(ctx context.Context) (*proc, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if p := r.p; p != nil && p.usable() { // a killed child is never given another task
		r.mu.Unlock()
		return p, nil
	}
	r.p = nil
	r.mu.Unlock()
	p, err := spawn(ctx, r.cfg, r.log)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		go p.shutdown()
		return nil, ErrClosed
	}
	r.p = p
	if r.last.PID == 0 || p.hello.KernelPath != r.last.KernelPath || p.hello.Priority != r.last.Priority {
		r.log.Info("compute child started", "pid", p.hello.PID, "priority", p.hello.Priority, "kernel", p.hello.KernelPath)
	} else {
		r.log.Debug("compute child started", "pid", p.hello.PID)
	}
	r.last = p.hello
	return p, nil
}

// numCPU is the machine's logical CPU count (a variable: tests pretend to run on a larger machine).
var numCPU = runtime.NumCPU

// Subcommand is the hidden hydra subcommand that runs Main: the default Config.Args.
const Subcommand = "__compute"
