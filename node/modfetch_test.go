package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/webui"
	"github.com/hydra-compute/hydra/wire"
)

// TestModuleTransfer: a two-member cluster's upload is held by both when it answers; a member
// fetching from another checks the announced size against its own cap and the bytes against
// the hash; a peer outside the cluster gets its stream reset without a byte of any module.
func TestModuleTransfer(t *testing.T) {
	nodes := startCluster(t, 2)
	waitLeaderAndTokens(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	info, err := webui.NewClient(nodes[0].HTTPURL(), nodes[0].APIToken()).UploadModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if !nodes[0].hasModule(info.SHA256) || !nodes[1].hasModule(info.SHA256) {
		t.Fatal("the upload answered before the second member held the module")
	}
	// Both validated it into the compile cache, which lives under Hydra's version (wazero keys
	// its entries by the module's hash, its own version and the CPU).
	for _, n := range nodes {
		dir := n.wasmCacheDir()
		if filepath.Base(dir) != Version {
			t.Fatalf("cache dir %s is not under the version %s", dir, Version)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "*", "*")); len(files) == 0 {
			t.Fatalf("%s: nothing compiled into %s", n.cfg.Name, dir)
		}
	}

	// A damaged copy on the serving member: the fetcher refuses the bytes.
	fake := strings.Repeat("7", 64)
	if err := os.WriteFile(filepath.Join(nodes[0].modulesDir(), fake), code, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].fetchModuleFrom(ctx, nodes[0].ID(), fake); err == nil || !strings.Contains(err.Error(), "hash to") {
		t.Fatalf("damaged module fetched: %v", err)
	}
	if err := nodes[1].ensureModule(ctx, fake, ""); err == nil || nodes[1].hasModule(fake) {
		t.Fatalf("damaged module stored: %v", err)
	}
	// A module larger than the fetcher's cap is refused from the header.
	nodes[1].cfg.MaxModuleBytes = int64(len(code)) - 1
	if _, err := nodes[1].fetchModuleFrom(ctx, nodes[0].ID(), info.SHA256); err == nil || !strings.Contains(err.Error(), "module cap") {
		t.Fatalf("module over the cap fetched: %v", err)
	}
	nodes[1].cfg.MaxModuleBytes = 0
	if _, err := nodes[1].fetchModuleFrom(ctx, nodes[0].ID(), strings.Repeat("ab", 32)); err == nil || !strings.Contains(err.Error(), "no such module") {
		t.Fatalf("missing module: %v", err)
	}

	// An outsider: connected (the join protocols need that), but the module stream is reset.
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Connect(ctx, nodes[0].info()); err != nil {
		t.Logf("outsider refused at connection: %v", err)
		return
	}
	s, err := h.NewStream(ctx, nodes[0].ID(), ModuleGetProtocol)
	if err != nil {
		return // refused at protocol negotiation
	}
	defer s.Reset()
	req, _ := json.Marshal(moduleReq{SHA256: info.SHA256})
	_ = wire.WriteFrame(s, req)
	_ = s.CloseWrite()
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	if raw, err := wire.ReadFrame(bufio.NewReader(s), moduleHdrMax); err == nil {
		t.Fatalf("an outsider got an answer: %s", raw)
	}
}

// TestModuleFetchPassesAStalledMember: a member that takes the module stream and never answers
// (its process hung, its disk stalled) is passed over once moduleHeaderWait has gone by, and the
// module is fetched from the next member. Before, the fetch waited for its header the whole
// moduleTransfer (2 minutes) per such member: a chunk's module, or a submit's, waited that long.
func TestModuleFetchPassesAStalledMember(t *testing.T) {
	nodes := startCluster(t, 2)
	waitLeaderAndTokens(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	info, err := webui.NewClient(nodes[0].HTTPURL(), nodes[0].APIToken()).UploadModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].deleteLocalModule(info.SHA256); err != nil { // only nodes[0] holds it now
		t.Fatal(err)
	}

	stall := admittedHost(t, ctx, nodes[0], nodes[0].APIToken(), consensus.RoleMember)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the host's Close (registered earlier)
	asked := make(chan struct{}, 1)
	stall.SetStreamHandler(ModuleGetProtocol, func(s network.Stream) {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-release // never answers
		_ = s.Reset()
	})
	if err := stall.Connect(ctx, nodes[1].info()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the stalled peer a member on nodes[1]", func() error {
		if !nodes[1].host.IsMember(stall.ID()) {
			return os.ErrNotExist
		}
		return nil
	})

	// The stalled member is asked first (as a member asking to hold the module is).
	fctx, fcancel := context.WithTimeout(ctx, 40*time.Second)
	defer fcancel()
	began := time.Now()
	if err := nodes[1].ensureModule(fctx, info.SHA256, stall.ID()); err != nil {
		t.Fatalf("module not fetched past the stalled member after %s: %v", time.Since(began).Round(time.Second), err)
	}
	select {
	case <-asked:
	default:
		t.Fatal("the stalled member was never asked")
	}
	if !nodes[1].moduleIntact(info.SHA256) {
		t.Fatal("module not stored")
	}
}

// TestModuleDropWaitsForAFetchUnderWay: a member asked to drop a module it is still fetching (an
// upload answers once one other member holds it, while the others still fetch) drops it once the
// fetch is done. Before, the drop found the module not held and answered at once; the fetch then
// stored it, a copy that nothing deleted, listed on that member and taking its disk.
func TestModuleDropWaitsForAFetchUnderWay(t *testing.T) {
	n, tok, ctx, _, info := moduleNode(t)
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.deleteLocalModule(info.SHA256); err != nil { // n will fetch it from m
		t.Fatal(err)
	}
	m := admittedHost(t, ctx, n, tok, consensus.RoleMember)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	asked := make(chan struct{}, 1)
	m.SetStreamHandler(ModuleGetProtocol, func(s network.Stream) { // m serves the module once released
		defer s.Close()
		if _, err := wire.ReadFrame(bufio.NewReader(s), moduleReqMax); err != nil {
			_ = s.Reset()
			return
		}
		asked <- struct{}{}
		<-release
		hdr, _ := json.Marshal(moduleHdr{Size: int64(len(code))})
		if wire.WriteFrame(s, hdr) == nil {
			_, _ = s.Write(code)
		}
	})

	held := make(chan error, 1)
	go func() { held <- p2p.Call(ctx, m, n.ID(), ModuleHoldProtocol, moduleReq{SHA256: info.SHA256}, nil) }()
	select {
	case <-asked: // n's fetch is under way
	case err := <-held:
		t.Fatalf("the hold answered before n fetched: %v", err)
	case <-ctx.Done():
		t.Fatal("n never fetched the module")
	}
	dropped := make(chan error, 1)
	go func() {
		dropped <- p2p.Call(ctx, m, n.ID(), ModuleHoldProtocol, moduleReq{SHA256: info.SHA256, Drop: true}, nil)
	}()
	answered := false // the drop answered while the fetch is under way
	waitFor(t, 10*time.Second, "the drop at n", func() error {
		select {
		case err := <-dropped:
			dropped <- err
			answered = true
			return nil
		default:
		}
		holds := 0
		for _, conn := range n.host.Host().Network().ConnsToPeer(m.ID()) {
			for _, s := range conn.GetStreams() {
				if s.Protocol() == ModuleHoldProtocol {
					holds++
				}
			}
		}
		if holds < 2 {
			return os.ErrNotExist
		}
		return nil
	})
	if !answered {
		select {
		case <-dropped:
			answered = true
		case <-time.After(time.Second): // a drop that does not wait answers in milliseconds
		}
	}
	if answered {
		t.Fatal("the drop was answered while the module was being fetched: the fetch stores it after")
	}
	once.Do(func() { close(release) })
	for _, ch := range []chan error{held, dropped} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("no answer")
		}
	}
	if n.hasModule(info.SHA256) {
		t.Fatal("the module dropped while it was fetched stays stored")
	}
}

// FuzzModuleDecoders: the module protocols' decoders refuse bad input with an error, never a
// panic, and accept only a valid hash or a size inside the cap.
func FuzzModuleDecoders(f *testing.F) {
	f.Add([]byte(`{"sha256":"` + strings.Repeat("ab", 32) + `"}`))
	f.Add([]byte(`{"size":1024}`))
	f.Add([]byte(`{"size":-1}`))
	f.Add([]byte(`{"error":"not held here"}`))
	f.Add([]byte(`{"sha256":"../../etc/passwd"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if req, err := decodeModuleReq(raw); err == nil && !validSHA(req.SHA256) {
			t.Fatalf("accepted %q", req.SHA256)
		}
		if n, err := decodeModuleHdr(raw, wasm.DefaultMaxModuleBytes); err == nil && (n <= 0 || n > wasm.DefaultMaxModuleBytes) {
			t.Fatalf("accepted size %d", n)
		}
	})
}

// TestWorkerCannotHoldOrDropModules: the module hold protocol (store a module fetched from the
// caller, or delete one) takes requests from members only: an admitted worker's drop leaves the
// module, and its hold stores nothing (a compromised worker could fill every node's disk with
// modules, or delete one a job is about to use); a member's drop deletes it.
func TestWorkerCannotHoldOrDropModules(t *testing.T) {
	n, tok, ctx, _, info := moduleNode(t)
	admitted := func(role string) host.Host { return admittedHost(t, ctx, n, tok, role) }
	w := admitted(consensus.RoleWorker)
	if err := p2p.Call(ctx, w, n.ID(), ModuleHoldProtocol, moduleReq{SHA256: info.SHA256, Drop: true}, nil); err == nil {
		t.Error("a worker's drop was answered")
	}
	if !n.hasModule(info.SHA256) {
		t.Fatal("a worker's drop deleted the module")
	}
	other := strings.Repeat("ab", 32)
	if err := p2p.Call(ctx, w, n.ID(), ModuleHoldProtocol, moduleReq{SHA256: other}, nil); err == nil {
		t.Error("a worker's hold was answered")
	}
	m := admitted(consensus.RoleMember)
	if err := p2p.Call(ctx, m, n.ID(), ModuleHoldProtocol, moduleReq{SHA256: info.SHA256, Drop: true}, nil); err != nil || n.hasModule(info.SHA256) {
		t.Fatalf("a member's drop: %v, module still held %v", err, n.hasModule(info.SHA256))
	}
}

// TestStoreModuleRepairsACorruptCopy: storing a module over a copy of the right size with other
// bytes (a flipped bit on disk) replaces it; before, the size alone was compared, the corrupt copy
// stayed, and every run of the module failed its hash check on this node.
func TestStoreModuleRepairsACorruptCopy(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	sha := wasm.Hash(code)
	if err := n.storeModule(sha, code); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(n.modulesDir(), sha)
	bad := append([]byte(nil), code...)
	bad[len(bad)/2] ^= 0x40
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.storeModule(sha, code); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, code) {
		t.Fatalf("the corrupt copy stayed (%v)", err)
	}
}

// TestModuleDropWaitsForTheAskersIndex: a member asked to drop a module judges "a job uses it" on
// a replica at least as far as the asker's: the drop names the index the asker had applied, and
// the member waits for it. Before, a DELETE right after a cancel left a copy on every follower
// that had not applied the cancel yet (each answered "module in use" and kept it).
func TestModuleDropWaitsForTheAskersIndex(t *testing.T) {
	n, tok, ctx, c, info := moduleNode(t)
	job, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: info.SHA256, Items: 1000, Reduce: compute.ReduceSum}})
	if err != nil {
		t.Fatal(err)
	}
	m := admittedHost(t, ctx, n, tok, consensus.RoleMember)

	// The asker (m) has applied the job's cancel at an index this replica has not reached:
	// the job is still queued here while the drop is asked.
	target := n.raft.AppliedIndex() + 20
	dropped := make(chan error, 1)
	go func() {
		req := map[string]any{"sha256": info.SHA256, "drop": true, "index": target}
		dropped <- p2p.Call(ctx, m, n.ID(), ModuleHoldProtocol, req, nil)
	}()
	waitFor(t, 10*time.Second, "the drop waiting at the member", func() error {
		select {
		case err := <-dropped:
			t.Fatalf("the drop was answered before the member reached the asker's index: %v", err)
		default:
		}
		for _, conn := range n.host.Host().Network().ConnsToPeer(m.ID()) {
			for _, s := range conn.GetStreams() {
				if s.Protocol() == ModuleHoldProtocol {
					return nil
				}
			}
		}
		return os.ErrNotExist
	})
	if _, err := c.CancelJob(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	for n.raft.AppliedIndex() < target { // more entries up to the asker's index
		if _, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000, Seed: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-dropped:
		if err != nil {
			t.Fatalf("drop after the cancel: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the drop was never answered")
	}
	if n.hasModule(info.SHA256) {
		t.Fatal("the member kept a module no job uses any more")
	}
}

// moduleNode starts a node that computes nothing, with the sum example uploaded: the node, its
// admin token, a context for the test, a client of its API and the module's info.
func moduleNode(t *testing.T) (*testNode, string, context.Context, *webui.Client, webui.ModuleInfo) {
	t.Helper()
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	n.start(t)
	tok := activeAdminToken(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	c := webui.NewClient(n.HTTPURL(), tok)
	info, err := c.UploadModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	return n, tok, ctx, c, info
}

// admittedHost is a bare libp2p host admitted to n's cluster with role and connected to n: a
// peer that speaks the node's protocols as it likes.
func admittedHost(t *testing.T, ctx context.Context, n *testNode, tok, role string) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cmd, err := consensus.NewCommand(consensus.OpMemberAdd, consensus.MemberAdd{ID: h.ID().String(), Role: role, At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.raft.ApplyAs(ctx, cmd, tok); err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, n.info()); err != nil {
		t.Fatal(err)
	}
	return h
}
