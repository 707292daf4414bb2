package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// ABIVersion is the version of the module interface of docs/wasm.md.
const ABIVersion = 1

// Defaults of [Config].
const (
	DefaultMaxModuleBytes = 16 << 20 // largest module accepted
	// MaxModuleBytes is the most a node may be configured to accept (--max-module-bytes): the
	// engine compiles nothing larger, and a module is held in memory whole while it travels.
	// Compiling costs about 5 bytes of memory per byte of code in the node that validates an
	// upload, and about 10 in the compute child that runs it (TestMaxModuleMemory): a module at
	// this cap takes a node to about 250 MB and its child to about 350 MB, what a Raspberry Pi
	// can spare. (It was 256 MiB: 1.7 GB in the node, 2.7 GB in the child.)
	MaxModuleBytes     = DefaultMaxModuleBytes * 2
	DefaultMemoryPages = 2048 // 128 MiB of linear memory per instance
	DefaultCallTimeout = 60 * time.Second
	DefaultMaxOutput   = 64 << 20 // bytes one run may emit (concat)
	MaxParams          = 64 << 10 // bytes of a job's params
	maxStderrTail      = 2048     // bytes of a module's stdout/stderr kept for error messages
	wasmPage           = 64 << 10
)

// Config bounds what a module may use. Zero fields take the defaults.
type Config struct {
	// CacheDir, when set, keeps compiled machine code on disk across runs (wazero's compilation
	// cache, itself keyed by the module's hash, wazero's version and the CPU). Callers put the
	// Hydra version in the path so an upgrade starts a fresh cache.
	CacheDir string
	// MemoryPages caps each instance's linear memory in 64 KiB pages: memory.grow past it fails.
	MemoryPages uint32
	// CallTimeout bounds one call of hydra_map (or hydra_init): a module that loops forever
	// fails the call instead of holding a core.
	CallTimeout time.Duration
	// MaxOutput bounds the bytes one Run may collect through hydra.emit: a run whose output
	// would grow past it ends its prefix before the call that emitted too much (Module.Run).
	MaxOutput int
	// Uninterruptible runs machine code without wazero's termination checks, 5–20× faster on
	// tight loops (every loop back-edge otherwise calls into Go, BenchmarkInterruptible) but a
	// call can then not be cut: CallTimeout and context cancellation take effect only between
	// calls, and an endless loop holds its goroutine — and, at the next garbage collection, the
	// whole process — for good. Only a process that a watchdog outside it can kill may set it:
	// the compute child does, and its parent kills it when it falls silent (node/child).
	Uninterruptible bool
}

func (c Config) withDefaults() Config {
	if c.MemoryPages == 0 {
		c.MemoryPages = DefaultMemoryPages
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	return c
}

// Engine compiles and runs modules: one wazero runtime (the optimizing compiler on amd64 and
// arm64, the interpreter elsewhere, e.g. armv7) with the WASI host module and hydra.emit. Safe for
// concurrent use.
type Engine struct {
	cfg   Config
	rt    wazero.Runtime
	cache wazero.CompilationCache
	alloc experimental.MemoryAllocator // instances' linear memories (memory_mmap.go); nil: wazero's

	mu   sync.Mutex
	mods map[string]*Module
}

// NewEngine starts a runtime. Only WebAssembly 2.0 core features are on: no threads (shared
// memory, atomics), no other proposal, so a module runs the same on every architecture.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	rc := wazero.NewRuntimeConfig().
		WithCoreFeatures(api.CoreFeaturesV2).
		WithMemoryLimitPages(cfg.MemoryPages).
		WithCloseOnContextDone(!cfg.Uninterruptible)
	e := &Engine{cfg: cfg, mods: map[string]*Module{}, alloc: memoryAllocator()}
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", cfg.CacheDir, err)
		}
		e.cache = c
		rc = rc.WithCompilationCache(c)
	}
	e.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		e.Close(ctx)
		return nil, fmt.Errorf("wasi host module: %w", err)
	}
	_, err := e.rt.NewHostModuleBuilder(hydraModule).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(emit), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).
		WithParameterNames("ptr", "len").Export("emit").
		Instantiate(ctx)
	if err != nil {
		e.Close(ctx)
		return nil, fmt.Errorf("hydra host module: %w", err)
	}
	return e, nil
}

// Close releases the runtime, its modules and instances.
func (e *Engine) Close(ctx context.Context) error {
	err := e.rt.Close(ctx)
	if e.cache != nil {
		err = errors.Join(err, e.cache.Close(ctx))
	}
	return err
}

// Hash is the content address of a module: the hex SHA-256 of its bytes.
func Hash(code []byte) string {
	s := sha256.Sum256(code)
	return hex.EncodeToString(s[:])
}

// Module is a compiled, validated module, with a pool of idle instances per params so that a
// node running many chunks of a job instantiates and initialises once per worker, not per chunk.
type Module struct {
	e       *Engine
	SHA256  string
	Size    int
	cm      wazero.CompiledModule
	init    bool // exports hydra_init
	alloc   bool // exports hydra_alloc
	reactor bool // exports _initialize
	emits   bool // imports hydra.emit

	mu   sync.Mutex
	idle map[string][]*instance
}

// Compile validates code and compiles it (from the disk cache when this node compiled it
// before), or returns the module already compiled. Validation refuses: a binary that is not
// WebAssembly 2.0 without proposals (threads and shared memory included), imports outside the
// allow-list (files, sockets, other host functions), a missing or mistyped hydra_map, hydra_init
// or hydra_alloc, and a command module (one with _start but no _initialize).
func (e *Engine) Compile(ctx context.Context, code []byte) (*Module, error) {
	sum := Hash(code)
	e.mu.Lock()
	m := e.mods[sum]
	e.mu.Unlock()
	if m != nil {
		return m, nil
	}
	m, err := e.compile(ctx, code, sum)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.mods[sum]; old != nil { // compiled concurrently
		_ = m.cm.Close(ctx)
		return old, nil
	}
	e.mods[sum] = m
	return m, nil
}

// Validate checks code as Compile does and compiles it into the disk cache (a compute child that
// runs it later loads machine code instead of compiling), without keeping the module in memory:
// a node validates every module it receives but runs only those its chunks need.
func (e *Engine) Validate(ctx context.Context, code []byte) error {
	sum := Hash(code)
	e.mu.Lock()
	m := e.mods[sum]
	e.mu.Unlock()
	if m != nil {
		return nil
	}
	m, err := e.compile(ctx, code, sum)
	if err != nil {
		return err
	}
	return m.cm.Close(ctx)
}

// compile validates and compiles code into a module the engine does not yet keep.
func (e *Engine) compile(ctx context.Context, code []byte, sum string) (*Module, error) {
	if len(code) > MaxModuleBytes {
		return nil, fmt.Errorf("module of %d bytes: too large", len(code))
	}
	imps, err := parseImports(code)
	if err != nil {
		return nil, err
	}
	if err := checkImports(imps); err != nil {
		return nil, err
	}
	if err := checkBounds(code); err != nil {
		return nil, err
	}
	cm, err := e.rt.CompileModule(ctx, capTables(code))
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	m := &Module{e: e, SHA256: sum, Size: len(code), cm: cm, idle: map[string][]*instance{}}
	if err := m.checkExports(); err != nil {
		_ = cm.Close(ctx)
		return nil, err
	}
	for _, im := range imps {
		m.emits = m.emits || im.Module == hydraModule
	}
	return m, nil
}

func (m *Module) checkExports() error {
	ex := m.cm.ExportedFunctions()
	want := func(name string, params, results []api.ValueType, need bool) (bool, error) {
		d, ok := ex[name]
		if !ok {
			if need {
				return false, fmt.Errorf("module exports no %s(%s) -> %s", name, typeNames(params), typeNames(results))
			}
			return false, nil
		}
		if !sameTypes(d.ParamTypes(), params) || !sameTypes(d.ResultTypes(), results) {
			return false, fmt.Errorf("%s is (%s) -> (%s), want (%s) -> (%s)", name,
				typeNames(d.ParamTypes()), typeNames(d.ResultTypes()), typeNames(params), typeNames(results))
		}
		return true, nil
	}
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	if _, err := want("hydra_map", []api.ValueType{i64, i64}, []api.ValueType{i64}, true); err != nil {
		return err
	}
	var err error
	if m.init, err = want("hydra_init", []api.ValueType{i32, i32}, nil, false); err != nil {
		return err
	}
	if m.alloc, err = want("hydra_alloc", []api.ValueType{i32}, []api.ValueType{i32}, false); err != nil {
		return err
	}
	if m.reactor, err = want("_initialize", nil, nil, false); err != nil {
		return err
	}
	if _, cmd := ex["_start"]; cmd && !m.reactor {
		return errors.New("a command module (exports _start, no _initialize): build a reactor (Go: -buildmode=c-shared; clang: -mexec-model=reactor or -Wl,--no-entry)")
	}
	if _, ok := m.cm.ExportedMemories()["memory"]; (m.init || m.emits) && !ok {
		return errors.New("module uses hydra_init or hydra.emit but exports no memory named \"memory\"")
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func typeNames(ts []api.ValueType) string {
	s := ""
	for i, t := range ts {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(t)
	}
	return s
}

// Emits reports whether the module imports hydra.emit (needed by the concat reducer).
func (m *Module) Emits() bool { return m.emits }

// instance is one instantiated, initialised copy of a module; one worker uses it at a time.
type instance struct {
	mod    api.Module
	mapFn  api.Function
	stderr *tail
}

// errOutputFull is wrapped by the error of a call whose output does not fit what the run may
// still collect (Config.MaxOutput): the run's prefix ends before it (Module.Run).
var errOutputFull = errors.New("the output is full")

// callState is what hydra.emit appends to during one hydra_map call.
type callState struct {
	out   []byte
	max   int // bytes this call may still emit
	limit int // Config.MaxOutput, for the message
	err   error
}

type callKey struct{}

// emit is hydra.emit(ptr, len): it appends len bytes at ptr to the output of the running call.
func emit(ctx context.Context, mod api.Module, stack []uint64) {
	st, _ := ctx.Value(callKey{}).(*callState)
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	if st == nil {
		panic(errors.New("hydra.emit called outside hydra_map"))
	}
	if uint64(len(st.out))+uint64(n) > uint64(st.max) {
		st.err = fmt.Errorf("hydra.emit: %w (%d bytes)", errOutputFull, st.limit)
		panic(st.err)
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("hydra.emit(%d, %d): outside memory", ptr, n))
	}
	st.out = append(st.out, b...)
}

// tail keeps the last maxStderrTail bytes written by the module (stdout and stderr), to quote
// in the error of a trap: a Go module's panic message is there.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > maxStderrTail { // a write of up to the whole memory: only its end is kept
		p = p[len(p)-maxStderrTail:]
	}
	t.b = append(t.b, p...)
	if len(t.b) > maxStderrTail {
		t.b = append(t.b[:0], t.b[len(t.b)-maxStderrTail:]...)
	}
	return n, nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// newInstance instantiates the module and calls _initialize and hydra_init(params).
func (m *Module) newInstance(ctx context.Context, params []byte) (*instance, error) {
	if len(params) > 0 && !m.init {
		return nil, errors.New("params given but the module exports no hydra_init")
	}
	if len(params) > MaxParams {
		return nil, fmt.Errorf("params of %d bytes, limit %d", len(params), MaxParams)
	}
	// A seeded random source: the same stream on every node and every run, so a module cannot
	// tell runs apart; the seed is the module's hash.
	var seed [32]byte
	h, _ := hex.DecodeString(m.SHA256)
	copy(seed[:], h)
	t := &tail{}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStdout(t).WithStderr(t).WithRandSource(rand.NewChaCha8(seed))
	ctx, cancel := context.WithTimeout(ctx, m.e.cfg.CallTimeout)
	defer cancel()
	mod, err := m.e.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, m.e.alloc), m.cm, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	in := &instance{mod: mod, mapFn: mod.ExportedFunction("hydra_map"), stderr: t}
	fail := func(what string, err error) (*instance, error) {
		_ = mod.Close(context.Background())
		return nil, in.explain(what, ctx, err)
	}
	if m.reactor {
		if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
			return fail("_initialize", err)
		}
	}
	if m.init {
		ptr, err := m.place(ctx, mod, params)
		if err != nil {
			return fail("params", err)
		}
		if _, err := mod.ExportedFunction("hydra_init").Call(ctx, uint64(ptr), uint64(len(params))); err != nil {
			return fail("hydra_init", err)
		}
	}
	return in, nil
}

// place writes params into the instance's memory: into a buffer from hydra_alloc when the module
// exports it (Go modules must: Go's allocator assumes it owns all memory), else into pages grown
// for them past the module's data.
func (m *Module) place(ctx context.Context, mod api.Module, params []byte) (uint32, error) {
	mem := mod.Memory()
	var ptr uint32
	if m.alloc {
		r, err := mod.ExportedFunction("hydra_alloc").Call(ctx, uint64(len(params)))
		if err != nil {
			return 0, fmt.Errorf("hydra_alloc(%d): %w", len(params), err)
		}
		ptr = api.DecodeU32(r[0])
	} else if len(params) > 0 {
		prev, ok := mem.Grow(uint32((len(params) + wasmPage - 1) / wasmPage))
		if !ok {
			return 0, errors.New("no memory left for the params")
		}
		ptr = prev * wasmPage
	}
	if !mem.Write(ptr, params) {
		return 0, fmt.Errorf("params at %d (%d bytes) outside memory", ptr, len(params))
	}
	return ptr, nil
}

// explain turns a failed call into a message a user can act on: a deadline, an exit (a Go panic
// exits with code 2 after printing the panic), or a trap, with the module's last output.
func (in *instance) explain(what string, ctx context.Context, err error) error {
	var ee *sys.ExitError
	switch {
	case errors.As(err, &ee) && (ee.ExitCode() == sys.ExitCodeDeadlineExceeded || errors.Is(ctx.Err(), context.DeadlineExceeded)):
		err = fmt.Errorf("%w (an endless loop?)", ErrTimeout)
	case errors.As(err, &ee) && ee.ExitCode() == sys.ExitCodeContextCanceled:
		err = errCanceled
	case errors.As(err, &ee):
		err = fmt.Errorf("module exited with code %d", ee.ExitCode())
	}
	if out := in.stderr.String(); out != "" && !errors.Is(err, errCanceled) {
		return fmt.Errorf("%s: %w; module output: %q", what, err, out)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ErrTimeout is wrapped by the error of a call that ran past Config.CallTimeout.
var ErrTimeout = errors.New("no answer within the call deadline")

var errCanceled = errors.New("canceled")

// call runs hydra_map(lo, hi) with a deadline, collecting emitted bytes.
func (m *Module) call(ctx context.Context, in *instance, lo, hi uint64, st *callState) (uint64, error) {
	cctx, cancel := context.WithTimeout(context.WithValue(ctx, callKey{}, st), m.e.cfg.CallTimeout)
	defer cancel()
	r, err := in.mapFn.Call(cctx, lo, hi)
	if err != nil {
		if st.err != nil {
			err = st.err
		}
		return 0, in.explain(fmt.Sprintf("hydra_map(%d, %d)", lo, hi), cctx, err)
	}
	return r[0], nil
}

func (m *Module) get(ctx context.Context, params []byte) (*instance, error) {
	m.mu.Lock()
	if l := m.idle[string(params)]; len(l) > 0 {
		in := l[len(l)-1]
		m.idle[string(params)] = l[:len(l)-1]
		m.mu.Unlock()
		return in, nil
	}
	m.mu.Unlock()
	return m.newInstance(ctx, params)
}

// maxIdle bounds the pooled instances per params.
const maxIdle = 64

// put returns a healthy instance to the pool (a failed or cancelled one is closed: its state
// after a trap is unknown).
func (m *Module) put(in *instance, params []byte, ok bool) {
	if ok && !in.mod.IsClosed() {
		m.mu.Lock()
		k := string(params)
		if len(m.idle[k]) < maxIdle {
			m.idle[k] = append(m.idle[k], in)
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
	_ = in.mod.Close(context.Background())
}

// Close closes the module's pooled instances and its machine code, and forgets it: the next
// Compile of its bytes compiles it again (from the disk cache). Nothing may be running it.
func (m *Module) Close(ctx context.Context) error {
	m.e.mu.Lock()
	if m.e.mods[m.SHA256] == m {
		delete(m.e.mods, m.SHA256)
	}
	m.e.mu.Unlock()
	m.mu.Lock()
	idle := m.idle
	m.idle = map[string][]*instance{}
	m.mu.Unlock()
	for _, l := range idle {
		for _, in := range l {
			_ = in.mod.Close(ctx)
		}
	}
	return m.cm.Close(ctx)
}

// Release closes the pooled instances (a job ended; its params will not come back).
func (m *Module) Release(params []byte) {
	m.mu.Lock()
	l := m.idle[string(params)]
	delete(m.idle, string(params))
	m.mu.Unlock()
	for _, in := range l {
		_ = in.mod.Close(context.Background())
	}
}
