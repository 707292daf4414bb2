package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/webui"
	"github.com/hydra-compute/hydra/wire"
)

// Module transfer between members (docs/wasm.md, "Where modules live"). Modules never travel
// in the raft log: a node that needs one (a chunk of a job that names it, a submit through its
// API, a peer's request to hold it) fetches it from a member that has it, over a members-only
// stream, bounded by its own module cap and checked against the hash before it is validated
// and stored.
const (
	// ModuleGetProtocol streams a stored module's bytes to a member: a request frame
	// {"sha256"}, then a header frame {"size"} or {"error"} and the raw bytes.
	ModuleGetProtocol = "/hydra/module/get/1.0.0"
	// ModuleHoldProtocol asks a member to hold a module, fetching it from the caller; it
	// answers once the module is stored there (an upload waits for one such answer).
	ModuleHoldProtocol = "/hydra/module/hold/1.0.0"

	moduleReqMax   = 256 // bytes of a request frame
	moduleHdrMax   = 1024
	moduleTransfer = 2 * time.Minute // one module transfer at most (16 MiB at 1 Mbit/s ~ 2 min)
	// moduleHeaderWait bounds the wait for a member's header (a stat of one file there): a member
	// that opens the stream but never answers (its process hung, its disk stalled) is passed over
	// for the next one then, instead of holding the fetch for the whole moduleTransfer.
	moduleHeaderWait = 10 * time.Second
	moduleHoldQuiet  = 30 * time.Second
	// moduleDropWait bounds how long a member asked to drop a module waits for its replica to
	// reach the asker's applied index before it checks whether a job still uses the module.
	moduleDropWait = 5 * time.Second
)

// moduleReq is the request of both module protocols.
type moduleReq struct {
	SHA256 string `json:"sha256"`
	// Drop (hold protocol) asks the member to delete its copy instead, unless a job uses it.
	Drop bool `json:"drop,omitempty"`
	// Index (with Drop) is the raft index the asker had applied when it found no unfinished
	// job using the module: the member judges on a replica at least that far (waiting up to
	// moduleDropWait for it). Without it, a delete right after a cancel found the job still
	// running on every follower that had not applied the cancel yet, and each kept its copy.
	Index uint64 `json:"index,omitempty"`
}

// moduleHdr answers a get: the size of the bytes that follow, or why none follow.
type moduleHdr struct {
	Size  int64  `json:"size"`
	Error string `json:"error,omitempty"`
}

// decodeModuleReq reads a module request, refusing anything but one valid hash.
func decodeModuleReq(raw []byte) (moduleReq, error) {
	var req moduleReq
	if err := json.Unmarshal(raw, &req); err != nil {
		return moduleReq{}, fmt.Errorf("module request: %w", err)
	}
	if !validSHA(req.SHA256) {
		return moduleReq{}, fmt.Errorf("module request: %q is not a lowercase hex SHA-256", clipText(req.SHA256))
	}
	return req, nil
}

// notHeldHere is a module header's error from a member that does not hold the module: only
// that answer from every member tells a fetcher that the module is gone (errNotHeld).
const notHeldHere = "not held here"

// errNotHeld is the error of a member's answer that it does not hold the module.
var errNotHeld = errors.New(notHeldHere)

// decodeModuleHdr reads a get's header and checks the size against the cap.
func decodeModuleHdr(raw []byte, limit int64) (int64, error) {
	var h moduleHdr
	if err := json.Unmarshal(raw, &h); err != nil {
		return 0, fmt.Errorf("module header: %w", err)
	}
	if h.Error == notHeldHere {
		return 0, fmt.Errorf("%w: %w", webui.ErrNoSuchModule, errNotHeld)
	}
	if h.Error != "" {
		return 0, fmt.Errorf("%w: %s", webui.ErrNoSuchModule, clipText(h.Error))
	}
	if h.Size <= 0 || h.Size > limit {
		return 0, fmt.Errorf("module header: size %d outside 1..%d (this node's module cap)", h.Size, limit)
	}
	return h.Size, nil
}

func clipText(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// moduleFetches makes concurrent needs of one module share one fetch.
type moduleFetches struct {
	mu       sync.Mutex
	inflight map[string]*moduleFetch
}

type moduleFetch struct {
	done chan struct{}
	err  error
}

// await returns once no fetch of sha is under way here, or ctx ends. A delete waits for one: an
// upload answers once one other member holds the module while the others still fetch it, and a
// delete right after found it not held on those, whose fetch then stored it after the delete (a
// copy nothing deleted, listed on that member and filling its disk).
func (f *moduleFetches) await(ctx context.Context, sha string) {
	f.mu.Lock()
	call := f.inflight[sha]
	f.mu.Unlock()
	if call == nil {
		return
	}
	select {
	case <-call.done:
	case <-ctx.Done():
	}
}

// serveModules registers the module protocols; both refuse a non-member before reading a byte,
// and hold (which stores or deletes a module here) takes requests from members only, not
// workers: a worker fetches the modules its chunks need, and never uploads or deletes one (a
// compromised worker could otherwise fill every node's disk with modules, or delete one a job
// is about to use).
func (n *Node) serveModules() {
	h := n.host.Host()
	h.SetStreamHandler(ModuleGetProtocol, n.serveModuleGet)
	mayHold := func(p peer.ID) bool { return n.raft.PeerRole(p) == consensus.RoleMember }
	p2p.ServeAllowed(h, ModuleHoldProtocol, moduleReqMax, moduleTransfer+moduleHoldQuiet, n.log, mayHold,
		func(ctx context.Context, from peer.ID, raw json.RawMessage) (any, error) {
			req, err := decodeModuleReq(raw)
			if err != nil {
				return nil, err
			}
			if req.Drop {
				if req.Index > 0 {
					wctx, cancel := context.WithTimeout(ctx, moduleDropWait)
					err := n.raft.WaitForIndex(wctx, req.Index)
					cancel()
					if err != nil {
						n.log.Debug("module drop: replica behind the asker's index", "sha256", req.SHA256, "index", req.Index, "err", err)
					}
				}
				n.modFetch.await(ctx, req.SHA256)
				if err := n.deleteLocalModule(req.SHA256); err != nil && !errors.Is(err, webui.ErrNoSuchModule) {
					return nil, err
				}
				return moduleReq{SHA256: req.SHA256, Drop: true}, nil
			}
			if err := n.ensureModule(ctx, req.SHA256, from); err != nil {
				return nil, err
			}
			return moduleReq{SHA256: req.SHA256}, nil
		})
}

func (n *Node) serveModuleGet(s network.Stream) {
	from := s.Conn().RemotePeer()
	if !n.host.IsMember(from) {
		n.log.Debug("refused module stream from a non-member", "peer", from)
		_ = s.Reset()
		return
	}
	_ = s.SetDeadline(time.Now().Add(moduleTransfer))
	raw, err := wire.ReadFrame(bufio.NewReader(s), moduleReqMax)
	if err != nil {
		_ = s.Reset()
		return
	}
	var hdr moduleHdr
	var f *os.File
	req, err := decodeModuleReq(raw)
	sha := req.SHA256
	if err == nil {
		f, err = os.Open(filepath.Join(n.modulesDir(), sha))
	}
	if err == nil {
		defer f.Close()
		var st os.FileInfo
		if st, err = f.Stat(); err == nil {
			hdr.Size = st.Size()
		}
	}
	switch {
	case err == nil:
	case sha == "":
		hdr.Error = err.Error()
	case errors.Is(err, fs.ErrNotExist):
		hdr.Error = notHeldHere
	default: // held perhaps, but not readable now (too many open files, a failing disk)
		hdr.Error = "cannot read it here"
	}
	b, _ := json.Marshal(hdr)
	if err := wire.WriteFrame(s, b); err != nil {
		_ = s.Reset()
		return
	}
	if f != nil && hdr.Error == "" {
		if _, err := io.Copy(s, io.LimitReader(f, hdr.Size)); err != nil {
			_ = s.Reset()
			return
		}
	}
	_ = s.Close()
}

// fetchModuleFrom reads a module from one member, checking size and hash (not yet validated).
func (n *Node) fetchModuleFrom(ctx context.Context, p peer.ID, sha string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, moduleTransfer)
	defer cancel()
	// Opening the stream and the header are bounded by moduleHeaderWait, the bytes by
	// moduleTransfer: a member that never answers costs a fetch seconds, not minutes, before
	// fetchModule tries the next one (each bounded alike, within its 2×moduleTransfer).
	hctx, hcancel := context.WithTimeout(ctx, moduleHeaderWait)
	defer hcancel()
	s, err := n.host.Host().NewStream(hctx, p, ModuleGetProtocol)
	if err != nil {
		return nil, fmt.Errorf("module %.12s from %s: %w", sha, p, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Reset()
		}
	}()
	hdl, _ := hctx.Deadline()
	_ = s.SetDeadline(hdl)
	req, _ := json.Marshal(moduleReq{SHA256: sha})
	// The answer decides, as in p2p.Call: a member that answers at once and closes (over QUIC that
	// stops this side's sending) may leave the request's close failed with its header on the way.
	werr := wire.WriteFrame(s, req)
	if werr == nil {
		werr = s.CloseWrite()
	}
	br := bufio.NewReader(s)
	raw, err := wire.ReadFrame(br, moduleHdrMax)
	if err != nil {
		if werr != nil {
			return nil, fmt.Errorf("module %.12s from %s: send the request: %w", sha, p, werr)
		}
		return nil, fmt.Errorf("module %.12s from %s: no header within %s: %w", sha, p, moduleHeaderWait, err)
	}
	size, err := decodeModuleHdr(raw, n.MaxModuleBytes())
	if err != nil {
		return nil, fmt.Errorf("module %.12s from %s: %w", sha, p, err)
	}
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	code := make([]byte, size)
	if _, err := io.ReadFull(br, code); err != nil {
		return nil, fmt.Errorf("module %.12s from %s: %d bytes announced: %w", sha, p, size, err)
	}
	if got := wasm.Hash(code); got != sha {
		return nil, fmt.Errorf("module %.12s from %s: the bytes hash to %.12s", sha, p, got)
	}
	ok = true
	_ = s.Close()
	return code, nil
}

// ensureModule makes sure this node holds a module: fetched from prefer (when set) or any other
// member, validated like an upload, stored. Concurrent calls for one module share one fetch.
func (n *Node) ensureModule(ctx context.Context, sha string, prefer peer.ID) error {
	if !validSHA(sha) {
		return fmt.Errorf("%w: %q is not a SHA-256", webui.ErrNoSuchModule, clipText(sha))
	}
	if n.moduleIntact(sha) {
		return nil
	}
	f := &n.modFetch
	f.mu.Lock()
	if f.inflight == nil {
		f.inflight = map[string]*moduleFetch{}
	}
	call := f.inflight[sha]
	if call == nil {
		call = &moduleFetch{done: make(chan struct{})}
		f.inflight[sha] = call
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*moduleTransfer)
			defer cancel()
			call.err = n.fetchModule(fctx, sha, prefer)
			f.mu.Lock()
			delete(f.inflight, sha)
			f.mu.Unlock()
			close(call.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return fmt.Errorf("module %.12s: %w", sha, ctx.Err())
	}
}

// fetchModule tries prefer, then the other members in random order, until one has the module.
// When every other member answered that it holds none (or there is no other), and no peer
// preferred (a chunk's need, not a peer's request to hold it), the error is also a
// *child.ModuleFault: the module is gone from the cluster.
func (n *Node) fetchModule(ctx context.Context, sha string, prefer peer.ID) error {
	self := n.host.ID()
	var order []peer.ID
	known := false // this node's replica knows itself a server: it knows the cluster's members
	for _, s := range n.raft.Servers() {
		if s.ID != self && s.ID != prefer {
			order = append(order, s.ID)
		}
		known = known || s.ID == self
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	if prefer != "" && prefer != self {
		order = append([]peer.ID{prefer}, order...)
	}
	var errs []string
	gone := known && (prefer == "" || prefer == self) // every member asked answered that it holds none
	for _, p := range order {
		if !n.host.IsMember(p) {
			gone = false
			continue
		}
		code, err := n.fetchModuleFrom(ctx, p, sha)
		if err == nil {
			if err = n.checkModule(ctx, code); err == nil {
				err = n.storeModule(sha, code)
			}
			if err == nil {
				n.log.Info("module fetched", "sha256", sha, "size", len(code), "from", p)
				return nil
			}
		}
		gone = gone && errors.Is(err, errNotHeld)
		errs = append(errs, err.Error())
		if ctx.Err() != nil {
			gone = false
			break
		}
	}
	if gone && len(order) == len(errs) {
		// Not this node's trouble but the job's: every node that runs its chunks finds the same,
		// and the coordinator fails the job after a few (as a trap), where its chunks were
		// failed and leased again for ever.
		return fmt.Errorf("%w: %w", webui.ErrNoSuchModule, &child.ModuleFault{Msg: fmt.Sprintf(
			"module %.12s is held by no member of the cluster (deleted, or every member that held it left)", sha)})
	}
	if len(errs) == 0 {
		return fmt.Errorf("module %.12s: %w (no other member to fetch it from)", sha, webui.ErrNoSuchModule)
	}
	return fmt.Errorf("module %.12s: %w: held by no member reached (%s)", sha, webui.ErrNoSuchModule, strings.Join(errs, "; "))
}

// replicateModule asks the other members to hold a module this node stores and returns once
// one of them does (an upload is then held by two members), or at once when this node is the
// cluster's only member. The other members go on fetching in the background.
func (n *Node) replicateModule(ctx context.Context, sha string) error {
	self := n.host.ID()
	var others []peer.ID
	for _, s := range n.raft.Servers() {
		if s.ID != self {
			others = append(others, s.ID)
		}
	}
	if len(others) == 0 {
		return nil
	}
	type answer struct {
		p   peer.ID
		err error
	}
	answers := make(chan answer, len(others))
	for _, p := range others {
		go func() {
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), moduleTransfer+moduleHoldQuiet)
			defer cancel()
			var resp moduleReq
			err := p2p.Call(hctx, n.host.Host(), p, ModuleHoldProtocol, moduleReq{SHA256: sha}, &resp)
			if err == nil && resp.SHA256 != sha {
				err = fmt.Errorf("answered for %q", clipText(resp.SHA256))
			}
			answers <- answer{p, err}
		}()
	}
	var errs []string
	for range others {
		select {
		case a := <-answers:
			if a.err == nil {
				return nil
			}
			errs = append(errs, fmt.Sprintf("%s: %v", a.p, a.err))
		case <-ctx.Done():
			return fmt.Errorf("%w: module %.12s stored here, but no other member holds it yet: %w", webui.ErrUnavailable, sha, ctx.Err())
		}
	}
	return fmt.Errorf("%w: module %.12s stored here, but no other member took it: %s", webui.ErrUnavailable, sha, strings.Join(errs, "; "))
}

// prepareChunk fetches a WebAssembly chunk's module before the chunk runs, if this node lacks it.
func (n *Node) prepareChunk(ctx context.Context, spec compute.JobSpec) error {
	if spec.Kind != compute.KindWasm || spec.Wasm == nil {
		return nil
	}
	return n.ensureModule(ctx, spec.Wasm.Module, "")
}

// dropModule asks every other member to delete its copy of a module (best effort: a member
// that is away keeps its copy, and a job naming the module later would fetch it again).
func (n *Node) dropModule(ctx context.Context, sha string) {
	self := n.host.ID()
	index := n.raft.AppliedIndex()
	var wg sync.WaitGroup
	for _, s := range n.raft.Servers() {
		if s.ID == self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := p2p.Call(dctx, n.host.Host(), s.ID, ModuleHoldProtocol, moduleReq{SHA256: sha, Drop: true, Index: index}, nil); err != nil {
				n.log.Warn("module delete not reached a member", "sha256", sha, "peer", s.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}
