package child

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/wire"
)

// Timeouts of the parent side. A child at idle priority on a machine its owner keeps busy may
// get no CPU for a while, so both are generous: killing a child that was only starved would
// throw its finished prefix away.
const (
	helloTimeout = 30 * time.Second // from spawn to hello
	stopTimeout  = 30 * time.Second // from stop to the prefix result
	exitTimeout  = 2 * time.Second  // from exit to the process gone, then SIGKILL
)

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
}

// Result is a task's finished prefix: Done = [Range.Start, Range.Start+done) and its encoded
// result (compute.EncodePiBlocksPayload, or compute.EncodeMandelPayload of Done's whole rows).
// ComputeSeconds is the CPU time (user + system, all threads) the child used while the task
// ran — what the machine really gave, so a duty-cycled or starved node is not credited with
// time it did not compute; where the OS cannot tell, it is wall time × workers.
type Result struct {
	ID             uint64
	Done           compute.Range
	Payload        []byte
	ComputeSeconds float64
	// Also are finished ranges of the task beyond Done, each with its payload, in order. Only a
	// pause that froze the child has them: blocks other kernel workers finished ahead of the
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
// false when no child runs (it died and has not been restarted yet).
func (r *Runner) Hello() (Hello, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil || r.p.exited() {
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

// effective turns the "0 means default" settings into what the child runs: all CPUs, 100 %.
func effective(cpus, limit int) (int, int) {
	if cpus == 0 {
		cpus = runtime.NumCPU()
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
	if p := r.p; p != nil && !p.exited() {
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

// Run computes t in the child and returns its result. onProgress (may be nil) is called on
// Run's goroutine with the finished prefix in units (π samples, Mandelbrot rows) about every
// 250 ms.
//
// ctx cancellation, StopTask or Pause stop the task: Run then returns the finished prefix with
// a nil error (a stop loses nothing; compare Result.Done with t.Range or check ctx.Err()).
// Done may also be shorter than t.Range without a stop for a Mandelbrot range of more than
// wire.MaxResultCounts pixels (so that its result fits a log entry): run the rest as another task. While paused, Run waits for Resume or ctx.
// If the child crashes or is killed, Run returns an error and the next Run starts a new child.
func (r *Runner) Run(ctx context.Context, t Chunk, onProgress func(done uint64)) (Result, error) {
	if !r.runMu.TryLock() {
		return Result{}, ErrBusy
	}
	defer r.runMu.Unlock()
	r.disarmIdle()
	defer r.armIdle()
	if err := checkTask(t.Spec, t.Range); err != nil {
		return Result{}, fmt.Errorf("task %d: %w", t.ID, err)
	}
	var (
		p      *proc
		stopCh = make(chan struct{})
		cpus   int
		limit  int
	)
	for {
		if err := r.waitResumed(ctx); err != nil {
			return Result{}, err
		}
		var err error
		if p, err = r.child(ctx); err != nil {
			return Result{}, err
		}
		r.mu.Lock()
		if !r.paused { // else paused while the child started: wait again
			r.stopTask = stopCh
			cpus, limit = effective(r.cpus, r.limit)
			r.mu.Unlock()
			break
		}
		r.mu.Unlock()
	}
	r.seq++
	wire := r.seq
	defer func() {
		r.mu.Lock()
		if r.stopTask == stopCh {
			r.stopTask = nil
		}
		r.mu.Unlock()
	}()
	spec, rng := t.Spec, t.Range
	if err := p.send(message{kind: kindRun, h: header{Task: wire, Spec: &spec, Range: &rng, CPUs: cpus, CPULimit: limit}}); err != nil {
		p.kill()
		return Result{}, fmt.Errorf("task %d: send to compute child: %w", t.ID, err)
	}
	done := ctx.Done()
	// A WebAssembly task's child must keep talking (progress every 250 ms): one that falls
	// silent is stuck in a module call and is killed (see wasmSilence).
	var silent <-chan time.Time
	var silence *time.Timer
	if t.Spec.Kind == compute.KindWasm {
		silence = time.NewTimer(wasmSilence)
		defer silence.Stop()
		silent = silence.C
	}
	var stopTimer *time.Timer
	var stopDeadline <-chan time.Time
	defer func() {
		if stopTimer != nil {
			stopTimer.Stop()
		}
	}()
	sendStop := func() {
		done, stopCh = nil, nil
		if stopTimer == nil {
			_ = p.send(message{kind: kindStop, h: header{Task: wire}})
			stopTimer = time.NewTimer(stopTimeout)
			stopDeadline = stopTimer.C
		}
	}
	// handle returns done=true with Run's outcome when m ends the task.
	handle := func(m message) (res Result, done bool, err error) {
		if m.h.Task != wire && m.h.Task != 0 {
			return Result{}, false, nil // a straggler of an earlier task
		}
		switch m.kind {
		case kindProgress:
			if onProgress != nil {
				onProgress(m.h.Done)
			}
		case kindResult:
			res, err = r.result(p, t, m)
			return res, true, err
		case kindError:
			if m.h.Task == 0 {
				r.log.Warn("compute child reports an error", "err", m.h.Err)
				return Result{}, false, nil
			}
			if t.Spec.Kind == compute.KindWasm && strings.Contains(m.h.Err, wasm.ErrTimeout.Error()) {
				// The child found a module stuck in a call and exits (it cannot cut the call):
				// let it go before the next Run asks for a child.
				select {
				case <-p.dead:
				case <-time.After(exitTimeout):
					p.kill()
				}
			}
			if m.h.Fault && t.Spec.Kind == compute.KindWasm {
				return Result{}, true, fmt.Errorf("task %d: %w", t.ID, moduleFault(m.h.Err))
			}
			return Result{}, true, fmt.Errorf("task %d: compute child: %s", t.ID, m.h.Err)
		}
		return Result{}, false, nil
	}
	for {
		select {
		case m := <-p.msgs:
			if res, ok, err := handle(m); ok {
				return res, err
			}
			if silence != nil {
				silence.Reset(wasmSilence)
			}
		case <-silent:
			p.kill()
			select { // gone before the next Run asks for a child
			case <-p.dead:
			case <-time.After(exitTimeout):
			}
			return Result{}, fmt.Errorf("task %d: %w", t.ID, moduleFault(fmt.Sprintf(
				"%v: compute child silent for %v (a module call that never returns); killed", wasm.ErrTimeout, wasmSilence)))
		case <-p.dead:
			// Everything the child wrote is in msgs by now (dead closes after the reader ends):
			// a child that sent its result and exited (Close) still delivers it.
			for {
				select {
				case m := <-p.msgs:
					if res, ok, err := handle(m); ok {
						return res, err
					}
					continue
				default:
				}
				break
			}
			return Result{}, fmt.Errorf("task %d: %w", t.ID, p.exitError())
		case <-done:
			sendStop()
		case <-stopCh:
			if r.Paused() {
				if res, ok := r.freezeStop(p, t, wire); ok {
					return res, nil
				}
			}
			sendStop()
		case <-stopDeadline:
			p.kill()
			if t.Spec.Kind == compute.KindWasm { // it can only be stuck in a module call
				return Result{}, fmt.Errorf("task %d: %w", t.ID, moduleFault(fmt.Sprintf(
					"%v: compute child did not stop within %v (a module call that never returns); killed", wasm.ErrTimeout, stopTimeout)))
			}
			return Result{}, fmt.Errorf("task %d: compute child did not stop within %v; killed", t.ID, stopTimeout)
		}
	}
}

// freezeLogged, when set (by tests and benchmarks), sees the blocks a freeze found logged:
// what the child had finished, against which what the result keeps is counted.
var freezeLogged func(t Chunk, recs []shmRec)

// freezeStop stops a task at once for a pause (docs/design.md §7, "Pausing at once"): it
// freezes the child with SIGSTOP, reads every block it finished from the shared log, and kills
// it (the next Run starts another). At idle priority under an owner busy on every core the child
// would otherwise take a second or more to read a stop message, computing meanwhile. ok is
// false when the child cannot be frozen (no shared log, a WebAssembly task, not Linux): the
// caller then stops it by message.
func (r *Runner) freezeStop(p *proc, t Chunk, wireID uint64) (Result, bool) {
	if !p.hello.BlockLog || (t.Spec.Kind != compute.KindPi && t.Spec.Kind != compute.KindMandelbrot) {
		return Result{}, false
	}
	p.blockMu.Lock()
	defer p.blockMu.Unlock()
	if p.blocks == nil { // the child is gone
		return Result{}, false
	}
	cpu, err := p.freeze()
	if err != nil {
		r.log.Warn("compute child: freeze for a pause failed; stopping it by message", "err", err)
		p.thaw()
		return Result{}, false
	}
	res := Result{ID: t.ID, Done: compute.Range{Start: t.Range.Start, End: t.Range.Start}}
	if recs, cpu0, ok := p.blocks.collect(wireID); ok {
		var pix []uint32
		if t.Spec.Kind == compute.KindMandelbrot {
			pix = p.blocks.pixels(wire.MaxResultCounts)
		}
		if freezeLogged != nil {
			freezeLogged(t, recs)
		}
		parts := logParts(t, recs, pix)
		if len(parts) > 0 && parts[0].Done.Start == t.Range.Start {
			res.Done, res.Payload = parts[0].Done, parts[0].Payload
			parts = parts[1:]
		}
		res.Also = parts
		res.ComputeSeconds = max(cpu-cpu0, 0)
	}
	p.blocks.drop()
	r.mu.Lock()
	if r.p == p {
		r.p = nil // the next Run starts a new child
	}
	r.mu.Unlock()
	p.kill()
	return res, true
}

// result checks a result against its task: a prefix of the range with a payload that fits.
func (r *Runner) result(p *proc, t Chunk, m message) (Result, error) {
	d := *m.h.Range
	if d.Start != t.Range.Start || d.End > t.Range.End {
		p.kill()
		return Result{}, fmt.Errorf("task %d: compute child returned range %s for %s", t.ID, d, t.Range)
	}
	if t.Spec.Kind == compute.KindPi {
		if _, _, err := compute.DecodePiBlocks(m.payload, d); err != nil {
			p.kill()
			return Result{}, fmt.Errorf("task %d: compute child: %w", t.ID, err)
		}
	} else if t.Spec.Kind == compute.KindWasm {
		if _, _, err := compute.DecodeWasmPayload(m.payload, t.Spec.Wasm.Reduce); err != nil {
			p.kill()
			return Result{}, fmt.Errorf("task %d: compute child: %w", t.ID, err)
		}
	} else if len(m.payload) == 0 {
		p.kill()
		return Result{}, fmt.Errorf("task %d: compute child returned no payload", t.ID)
	}
	return Result{ID: t.ID, Done: d, Payload: m.payload, ComputeSeconds: m.h.ComputeSeconds}, nil
}

func (r *Runner) waitResumed(ctx context.Context) error {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return ErrClosed
		}
		if !r.paused {
			r.mu.Unlock()
			return nil
		}
		ch := r.resumed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Subcommand is the hidden hydra subcommand that runs Main: the default Config.Args.
const Subcommand = "__compute"
