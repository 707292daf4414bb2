package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/internal/atomicfile"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/webui"
)

// The WebAssembly module store of a node (docs/wasm.md): DATA/modules/<sha256>, written once
// (content-addressed) after the module passed validation; compiled machine code is cached in
// DATA/wasm-cache/<Hydra version> by wazero, shared with the compute child.

func (n *Node) modulesDir() string { return filepath.Join(n.cfg.DataDir, "modules") }

func (n *Node) wasmCacheDir() string {
	return filepath.Join(n.cfg.DataDir, "wasm-cache", strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == os.PathListSeparator {
			return '_'
		}
		return r
	}, Version))
}

// wasmEnv is the compute child's environment for WebAssembly tasks.
func (n *Node) wasmEnv() []string {
	return []string{child.EnvWasmModules + "=" + n.modulesDir(), child.EnvWasmCache + "=" + n.wasmCacheDir()}
}

// validator compiles uploads (validation plus a warm cache for the child); started on first use,
// and again on the next use if it could not start (its cache directory could not be made: a full
// disk), instead of refusing every module until the node restarts. It compiles one module at a
// time: compiling takes about 5 bytes of memory per byte of code, which the module cap is sized
// for (wasm.MaxModuleBytes), and uploads and fetches at once each took as much again.
type validator struct {
	mu   sync.Mutex
	eng  *wasm.Engine
	turn chan struct{} // holds a value while a module compiles; made once, under mu
}

// engine returns the validator's engine, started with its cache in dir if it is not yet.
func (v *validator) engine(dir string) (*wasm.Engine, chan struct{}, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.turn == nil {
		v.turn = make(chan struct{}, 1)
	}
	if v.eng == nil {
		eng, err := wasm.NewEngine(context.Background(), wasm.Config{CacheDir: dir})
		if err != nil {
			return nil, nil, fmt.Errorf("wasm engine: %w", err)
		}
		v.eng = eng
	}
	return v.eng, v.turn, nil
}

// MaxModuleBytes is the largest module accepted (--max-module-bytes, default 16 MiB).
func (n *Node) MaxModuleBytes() int64 {
	if n.cfg.MaxModuleBytes > 0 {
		return n.cfg.MaxModuleBytes
	}
	return wasm.DefaultMaxModuleBytes
}

// PutModule validates a module, stores it and returns once another member holds it too (or at
// once in a one-member cluster). Storing the same bytes again is a no-op.
func (n *Node) PutModule(ctx context.Context, code []byte) (webui.ModuleInfo, error) {
	if err := n.checkModule(ctx, code); err != nil {
		return webui.ModuleInfo{}, err
	}
	sha := wasm.Hash(code)
	if err := n.storeModule(sha, code); err != nil {
		return webui.ModuleInfo{}, err
	}
	if err := n.replicateModule(ctx, sha); err != nil {
		return webui.ModuleInfo{}, err
	}
	return webui.ModuleInfo{SHA256: sha, Size: int64(len(code))}, nil
}

// checkModule applies the module cap and validates code (imports, exports, features), leaving
// its machine code in the disk cache the compute child reads.
func (n *Node) checkModule(ctx context.Context, code []byte) error {
	if int64(len(code)) > n.MaxModuleBytes() {
		return fmt.Errorf("%w: %d bytes, cap %d", webui.ErrBadModule, len(code), n.MaxModuleBytes())
	}
	eng, turn, err := n.wasmVal.engine(n.wasmCacheDir())
	if err != nil {
		return err
	}
	select {
	case turn <- struct{}{}:
		defer func() { <-turn }()
	case <-ctx.Done():
		return fmt.Errorf("%w: other modules are being compiled: %w", webui.ErrUnavailable, ctx.Err())
	}
	if err := eng.Validate(ctx, code); err != nil {
		return fmt.Errorf("%w: %v", webui.ErrBadModule, err)
	}
	return nil
}

// storeModule writes a module under its hash (atomicfile.Write: a crash or a power cut leaves no
// torn module under a valid name, and a module reported stored stays).
func (n *Node) storeModule(sha string, code []byte) error {
	dir := n.modulesDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("module store: %w", err)
	}
	final := filepath.Join(dir, sha)
	if have, err := os.ReadFile(final); err == nil && bytes.Equal(have, code) {
		n.modIntact.Store(sha, true)
		return nil // already stored, intact (a copy of the right size with other bytes is replaced)
	}
	if err := atomicfile.Write(final, code, 0o600, uploadTempPrefix); err != nil {
		return fmt.Errorf("module store: %s: %w", sha, err)
	}
	n.modIntact.Store(sha, true)
	return nil
}

// uploadTempPrefix starts the name of a module being written (storeModule).
const uploadTempPrefix = ".upload-"

// removeUploadTemps removes the modules a killed node was writing (storeModule's temporary
// files, up to MaxModuleBytes each), which nothing else ever removes. It runs at start, before
// anything can store a module.
func (n *Node) removeUploadTemps() {
	ents, err := os.ReadDir(n.modulesDir())
	if err != nil {
		return // none yet (or unreadable: storing a module will say so)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), uploadTempPrefix) {
			continue
		}
		path := filepath.Join(n.modulesDir(), e.Name())
		if err := os.Remove(path); err != nil {
			n.log.Warn("remove a half-written module", "file", path, "err", err)
			continue
		}
		n.log.Info("removed a half-written module", "file", path)
	}
}

// removeOldWasmCaches removes the compiled-code caches of other Hydra versions
// (DATA/wasm-cache/<version>): an upgrade starts a fresh cache (wasmCacheDir), and nothing
// else ever removes the old one, so each upgrade kept a copy of every module's machine code.
// Only directories that look like wazero's caches go (holding nothing but wazero-* directories):
// anything else a user put there is left alone. It runs at start, before any engine opens a cache.
func (n *Node) removeOldWasmCaches() {
	root := filepath.Dir(n.wasmCacheDir())
	ents, err := os.ReadDir(root)
	if err != nil {
		return // none yet
	}
	current := filepath.Base(n.wasmCacheDir())
	for _, e := range ents {
		path := filepath.Join(root, e.Name())
		if e.Name() == current || !e.IsDir() || !looksLikeWasmCache(path) {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			n.log.Warn("remove an older version's wasm cache", "dir", path, "err", err)
			continue
		}
		n.log.Info("removed an older version's wasm cache", "dir", path)
	}
}

// warnInterpretedWasm says at start when WebAssembly jobs would run in wazero's interpreter on a
// platform that has its compiler (wasm.CompilerRefused): a W^X policy on the node's process,
// which the compute child inherits, makes every WebAssembly job about 50× slower, and nothing
// else would show why.
func (n *Node) warnInterpretedWasm() {
	if wasm.CompilerRefused() {
		n.log.Warn("WebAssembly jobs will run in wazero's interpreter, about 50× slower: this process may not make memory executable " +
			"(systemd MemoryDenyWriteExecute=yes, prctl PR_SET_MDWE, an SELinux rule denying execmem); allow it to compile modules")
	}
}

// looksLikeWasmCache reports whether dir holds only wazero's per-version cache directories
// (wazero-<version>-<arch>-<os>, made by wazero.NewCompilationCacheWithDir), or nothing.
func looksLikeWasmCache(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "wazero-") {
			return false
		}
	}
	return true
}

// moduleIntact reports whether this node stores sha with bytes that hash to it. A stored copy is
// hashed once a run (storeModule vouches for what it writes): a copy damaged on disk is then not
// taken as held, and is fetched again, instead of failing every chunk of the module here.
func (n *Node) moduleIntact(sha string) bool {
	if !n.hasModule(sha) {
		return false
	}
	if _, ok := n.modIntact.Load(sha); ok {
		return true
	}
	code, err := os.ReadFile(filepath.Join(n.modulesDir(), sha))
	if err != nil {
		return false
	}
	if got := wasm.Hash(code); got != sha {
		n.log.Warn("a stored module is damaged (its bytes hash to another value): fetching it again", "sha256", sha, "hash", got)
		return false
	}
	n.modIntact.Store(sha, true)
	return true
}

func validSHA(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// usersOf maps each module to the unfinished jobs that use it.
func (n *Node) usersOf() map[string][]string {
	users := map[string][]string{}
	for _, j := range n.jobs.Jobs() {
		if j.Kind == compute.KindWasm && j.Spec.Wasm != nil && !j.State.Finished() {
			users[j.Spec.Wasm.Module] = append(users[j.Spec.Wasm.Module], j.ID)
		}
	}
	return users
}

// Modules lists this node's stored modules.
func (n *Node) Modules() []webui.ModuleInfo {
	ents, err := os.ReadDir(n.modulesDir())
	if err != nil {
		return nil
	}
	users := n.usersOf()
	var out []webui.ModuleInfo
	for _, e := range ents {
		if !validSHA(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, webui.ModuleInfo{SHA256: e.Name(), Size: info.Size(), Jobs: users[e.Name()]})
	}
	return out
}

// DeleteModule removes a module no unfinished job uses, here and on every member reached. "A
// job uses it" is judged on this node's replica once it has applied everything the leader had
// committed when the request came (readBarrier): a cancel made through another node just before
// counts, and a submit too. Without a leader to ask, nothing is deleted (webui.ErrUnavailable).
func (n *Node) DeleteModule(ctx context.Context, sha string) error {
	if !validSHA(sha) {
		return fmt.Errorf("%w: %q is not a SHA-256", webui.ErrNoSuchModule, sha)
	}
	if err := n.readBarrier(ctx); err != nil {
		return fmt.Errorf("module %.12s: %w", sha, err)
	}
	// A fetch under way here would store the module again after the delete: wait for it, a
	// little (the members are asked to drop it with what is left of ctx).
	actx, cancel := context.WithTimeout(ctx, moduleDropWait)
	n.modFetch.await(actx, sha)
	cancel()
	err := n.deleteLocalModule(sha)
	if err != nil && !(errors.Is(err, webui.ErrNoSuchModule) && validSHA(sha)) {
		return err
	}
	n.dropModule(ctx, sha)
	return err
}

// deleteLocalModule removes this node's copy of a module no unfinished job uses.
func (n *Node) deleteLocalModule(sha string) error {
	if !validSHA(sha) {
		return fmt.Errorf("%w: %q is not a SHA-256", webui.ErrNoSuchModule, sha)
	}
	if jobs := n.usersOf()[sha]; len(jobs) > 0 {
		return fmt.Errorf("%w: jobs %s", webui.ErrModuleInUse, strings.Join(jobs, ", "))
	}
	n.modIntact.Delete(sha)
	if err := os.Remove(filepath.Join(n.modulesDir(), sha)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", webui.ErrNoSuchModule, sha)
		}
		return fmt.Errorf("delete module %s: %w", sha, err)
	}
	n.pruneWasmCache(true, false)
	return nil
}

// pruneWasmCache empties this version's compiled-code cache (DATA/wasm-cache/<version>/wazero-*/):
// wazero names an entry by a hash of the module, the runtime's settings and the CPU's features,
// which the node cannot compute, so a deleted module's machine code (megabytes for a module built
// by Go) cannot be picked out and removed alone. Without this every module ever uploaded kept its
// machine code for good, however many were deleted. The modules still stored are compiled again
// on their next use. temps removes wazero's temporary files (*.tmp) instead or as well: only a
// crash while writing an entry leaves one, so they go at start (pruneWasmCacheTemps), before any
// engine runs; a delete leaves them, as a compute child may be writing one.
func (n *Node) pruneWasmCache(entries, temps bool) {
	dirs, err := os.ReadDir(n.wasmCacheDir())
	if err != nil {
		return // none yet
	}
	for _, d := range dirs {
		if !d.IsDir() || !strings.HasPrefix(d.Name(), "wazero-") {
			continue // not wazero's: left alone
		}
		dir := filepath.Join(n.wasmCacheDir(), d.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			n.log.Warn("prune the wasm cache", "dir", dir, "err", err)
			continue
		}
		for _, e := range ents {
			name := e.Name()
			if !e.Type().IsRegular() || !(entries && isCacheEntry(name) || temps && strings.HasSuffix(name, ".tmp")) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				n.log.Warn("prune the wasm cache", "file", filepath.Join(dir, name), "err", err)
			}
		}
	}
}

// pruneWasmCacheTemps removes the temporary files of cache entries a crash left half-written.
func (n *Node) pruneWasmCacheTemps() { n.pruneWasmCache(false, true) }

// isCacheEntry reports whether name is one of wazero's cache entries: the hex of a SHA-256.
func isCacheEntry(name string) bool { return validSHA(name) }

// hasModule reports whether this node stores a module.
func (n *Node) hasModule(sha string) bool {
	_, err := os.Stat(filepath.Join(n.modulesDir(), sha))
	return validSHA(sha) && err == nil
}

// WasmResult is a WebAssembly job's reduced value so far.
func (n *Node) WasmResult(id string) (compute.WasmResult, error) { return n.jobs.WasmResult(id) }

// WasmOutput writes a concat job's output so far, in item order.
func (n *Node) WasmOutput(id string, w io.Writer) error { return n.jobs.WasmOutput(id, w) }
