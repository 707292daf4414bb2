package child

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/wire"
)

// Environment of the compute child for WebAssembly tasks, set by the node (Config.Env): where
// modules are stored (named by their SHA-256) and where compiled machine code is cached.
const (
	EnvWasmModules = "HYDRA_WASM_MODULES"
	EnvWasmCache   = "HYDRA_WASM_CACHE"
)

// WasmMaxOutput bounds the concat output of one task (the chunk result travels in the raft log:
// wire.MaxResult), leaving room for the rest of its payload: the format, the value, and each of
// up to compute.WasmJobBlocks blocks' value and output length (EncodeWasmBlocksPayload). A task
// whose items emit more returns the prefix that fits (wasm.Result).
const WasmMaxOutput = wire.MaxResult - (1 + 8 + binary.MaxVarintLen64 + compute.WasmJobBlocks*2*binary.MaxVarintLen64)

// wasmSilence is how long the parent waits for any message from a child running a WebAssembly
// task before it kills it. The child runs modules without wazero's in-call termination checks
// (5–20× faster): a module stuck in an endless loop cannot be cut inside the child and stalls
// it at the next garbage collection, progress reports included. Killing the process is the
// only sure stop; the task fails with this reason and the next task gets a new child.
var wasmSilence = wasm.DefaultCallTimeout + 30*time.Second

// wasmEngine is the child's runtime, started by the first WebAssembly task.
var (
	wasmOnce sync.Once
	wasmEng  *wasm.Engine
	wasmErr  error
)

func engine() (*wasm.Engine, error) {
	wasmOnce.Do(func() {
		wasmEng, wasmErr = wasm.NewEngine(context.Background(), wasm.Config{
			CacheDir: os.Getenv(EnvWasmCache), Uninterruptible: true, MaxOutput: WasmMaxOutput,
		})
	})
	return wasmEng, wasmErr
}

// loadModule compiles the module of a task from the node's module store (once per child: the
// engine keeps compiled modules).
func loadModule(sha string) (*wasm.Module, error) {
	e, err := engine()
	if err != nil {
		return nil, err
	}
	dir := os.Getenv(EnvWasmModules)
	if dir == "" {
		return nil, fmt.Errorf("module %s: no module store (%s unset)", sha, EnvWasmModules)
	}
	code, err := os.ReadFile(filepath.Join(dir, sha))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", sha, err)
	}
	if got := wasm.Hash(code); got != sha {
		return nil, fmt.Errorf("module %s: stored bytes hash to %s", sha, got)
	}
	return e.Compile(context.Background(), code)
}

// pooled is the module and params whose idle instances the child keeps (wasm.Module pools an
// instance per worker and params, initialised, for the next task of the same job), and the
// module whose machine code it keeps: those of the last task only. Nothing else released them,
// so every job a busy child ran kept an instance per worker, each with all the memory its
// module had touched (up to the 128 MiB cap), and every module its machine code (about 10
// bytes per byte of code), until the child sat idle for childIdleExit. A task of another module
// loads its machine code again from the disk cache.
type pooled struct {
	mu     sync.Mutex
	m      poolModule
	params string
}

// poolModule is what pooled needs of a module.
type poolModule interface {
	Release(params []byte)
	Close(ctx context.Context) error
}

// use makes m and params those kept, releasing the instances of other params and closing
// another module kept before.
func (p *pooled) use(m poolModule, params string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.m == nil:
	case p.m != m:
		_ = p.m.Close(context.Background())
	case p.params != params:
		p.m.Release([]byte(p.params))
	}
	p.m, p.params = m, params
}

var wasmPool pooled

// runWasm maps the task's module over its items on the child's workers. A stop lets the calls in
// flight finish (blocks are about 10 ms) and keeps the finished prefix.
func (c *child) runWasm(t *task) (done uint64, payload []byte, err error) {
	w := t.spec.Wasm
	m, err := loadModule(w.Module)
	if err != nil {
		return 0, nil, err
	}
	wasmPool.use(m, w.Params)
	res, err := m.Run(context.Background(), wasm.Run{
		Params: []byte(w.Params), Reduce: w.Reduce, Start: t.rng.Start, End: t.rng.End,
		BlockItems: compute.WasmBlockItems(w.Items), Workers: int(c.cpus.Load()),
		Poll: func() bool {
			if t.stopped.Load() {
				return true
			}
			c.gate.wait(t.halt)
			return t.stopped.Load()
		},
		OnWorker: func() func() {
			runtime.LockOSThread()
			lowerThisThread()
			return runtime.UnlockOSThread
		},
		OnProgress: func(d uint64) { t.wasmDone.Store(d) },
	})
	if err != nil {
		return 0, nil, &ModuleFault{Msg: err.Error()}
	}
	if res.Done == 0 {
		return 0, compute.EncodeWasmPayload(res.Value, nil), nil // nothing finished: no block
	}
	return res.Done, compute.EncodeWasmBlocksPayload(w.Reduce, res.Blocks), nil
}

// ModuleFault is a WebAssembly task's failure caused by its module (a trap, a call past its
// deadline, an endless loop, memory past the cap, one item's output past the limit; or a module
// no member of the cluster holds any more), as opposed to the node's (a module it could not
// fetch yet, a crashed child): the same module fails the same way on every node, so the
// coordinator counts the nodes it failed on and fails the job after a few.
type ModuleFault struct {
	Msg   string
	cause error // wasm.ErrTimeout for a module stuck in a call
}

func (f *ModuleFault) Error() string { return f.Msg }

// Unwrap lets errors.Is find wasm.ErrTimeout in a stuck module's fault.
func (f *ModuleFault) Unwrap() error { return f.cause }

// moduleFault is the fault the child reported as msg.
func moduleFault(msg string) *ModuleFault {
	f := &ModuleFault{Msg: msg}
	if strings.Contains(msg, wasm.ErrTimeout.Error()) {
		f.cause = wasm.ErrTimeout
	}
	return f
}

// EnvWasmCallTimeout overrides, in the child, the CPU time after which a WebAssembly task whose
// finished prefix does not move is declared stuck (a Go duration; tests shorten it).
const EnvWasmCallTimeout = "HYDRA_WASM_CALL_TIMEOUT"

func wasmCallTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(EnvWasmCallTimeout)); err == nil && d > 0 && d <= time.Hour {
		return d
	}
	return wasm.DefaultCallTimeout
}

// stuckCheck tells a module stuck in a call from a starved child: the finished prefix has not
// moved while the process used a call deadline's worth of CPU time per worker (wall time where the OS does
// not tell), so an owner keeping the machine busy never makes a slow module look stuck.
type stuckCheck struct {
	on      bool
	limit   float64
	last    uint64
	since   float64
	started bool
}

// newStuckCheck allows a call deadline of CPU time per worker: the prefix waits on its first
// unfinished block while the other workers go on.
func newStuckCheck(on bool, workers int) *stuckCheck {
	return &stuckCheck{on: on, limit: wasmCallTimeout().Seconds() * float64(max(workers, 1))}
}

func cpuNow() float64 {
	if s, ok := processCPU(); ok {
		return s
	}
	return float64(time.Now().UnixNano()) / 1e9
}

// check is called on every progress tick with the finished prefix; true means stuck.
func (s *stuckCheck) check(done uint64) bool {
	if !s.on {
		return false
	}
	now := cpuNow()
	if !s.started || done != s.last {
		s.started, s.last, s.since = true, done, now
		return false
	}
	return now-s.since > s.limit
}
