package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/hydra-compute/hydra/wire"
)

// echoApp records every App command it applies (op, payload, index) and answers with the
// payload; op OpAppFirst+1 is refused, and a payload "disk" fails as a full disk would.
type echoApp struct {
	mu      sync.Mutex
	applied []echoed
}

type echoed struct {
	op      byte
	payload string
	index   uint64
}

type diskFull struct{}

func (diskFull) Error() string      { return "disk full" }
func (diskFull) LocalFailure() bool { return true }

func (a *echoApp) Apply(op byte, payload []byte, index uint64) any {
	a.mu.Lock()
	defer a.mu.Unlock()
	if string(payload) == "disk" {
		return diskFull{}
	}
	if op == byte(OpAppFirst)+1 {
		return errors.New("refused")
	}
	a.applied = append(a.applied, echoed{op, string(payload), index})
	return string(payload)
}

func (a *echoApp) Snapshot(w io.Writer) error { return nil }
func (a *echoApp) Restore(r io.Reader) error  { return nil }

func (a *echoApp) list() []echoed {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]echoed(nil), a.applied...)
}

func appCmd(t testing.TB, op Op, payload string) []byte {
	t.Helper()
	b, err := EncodeCommand(Command{Op: op, Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func Test_Batch_EncodeDecode(t *testing.T) {
	cmds := [][]byte{appCmd(t, OpAppFirst, "a"), appCmd(t, OpAppFirst+5, ""), appCmd(t, OpAppFirst, strings.Repeat("x", 300))}
	entry := encodeBatch(cmds)
	c, err := DecodeCommand(entry)
	if err != nil || c.Op != OpBatch {
		t.Fatalf("decode the entry: %v %v", c.Op, err)
	}
	got, err := decodeBatch(c.Payload)
	if err != nil || len(got) != 3 {
		t.Fatalf("decode the batch: %v %v", got, err)
	}
	for i, g := range got {
		if b, _ := EncodeCommand(g); !bytes.Equal(b, cmds[i]) {
			t.Fatalf("command %d: %x, want %x", i, b, cmds[i])
		}
	}
	one := encodeBatch(cmds[:1])
	cluster := mustCmd(t, OpNodeRemove, NodeRemove{ID: "x"})
	for name, p := range map[string][]byte{
		"empty":              {},
		"unknown format":     append([]byte{2}, entry[3:]...),
		"one command":        one[2:],
		"truncated":          entry[2 : len(entry)-1],
		"trailing bytes":     append(append([]byte(nil), entry[2:]...), 0),
		"count over limit":   {batchFormat, 0xff, 0xff, 0xff, 0x7f},
		"count over bytes":   {batchFormat, 100, 1, 1},
		"length over bytes":  {batchFormat, 2, 200, 1},
		"cluster op inside":  encodeBatch([][]byte{cmds[0], cluster})[2:],
		"bad version inside": encodeBatch([][]byte{cmds[0], {9, byte(OpAppFirst)}})[2:],
		"nested batch":       encodeBatch([][]byte{cmds[0], entry})[2:],
		"long count":         {batchFormat, 0x82, 0x00, 2, 1, 0x40, 2, 1, 0x40},
	} {
		if _, err := decodeBatch(p); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// A batch entry applies its commands in order, each with its own result (a refusal stays that
// command's); the App sees the entry's index once.
func Test_FSM_ApplyBatch(t *testing.T) {
	app := &echoApp{}
	fsm := NewFSM(app)
	apply(fsm, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
	res := apply(fsm, 7, encodeBatch([][]byte{appCmd(t, OpAppFirst, "a"), appCmd(t, OpAppFirst+1, "no"), appCmd(t, OpAppFirst+2, "b")}))
	rs, ok := res.([]any)
	if !ok || len(rs) != 3 || rs[0] != "a" || rs[2] != "b" {
		t.Fatalf("results %#v", res)
	}
	if err, _ := rs[1].(error); err == nil {
		t.Fatalf("the refused command's result: %#v", rs[1])
	}
	want := []echoed{{byte(OpAppFirst), "a", 7}, {byte(OpAppFirst + 2), "b", 0}}
	if got := app.list(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if fsm.index.Load() != 7 {
		t.Fatalf("FSM index %d", fsm.index.Load())
	}
	// A malformed batch is refused as a whole, and changes nothing.
	bad := encodeBatch([][]byte{appCmd(t, OpAppFirst, "c"), mustCmd(t, OpNodeRemove, NodeRemove{ID: "x"})})
	if err, _ := apply(fsm, 8, bad).(error); !errors.Is(err, ErrRejected) {
		t.Fatalf("a batch with a cluster op: %v", err)
	}
	if len(app.list()) != 2 {
		t.Fatalf("a refused batch applied something: %v", app.list())
	}
}

// A local failure inside a batch stops the FSM there: nothing after it is applied.
func Test_FSM_BatchStopsAtLocalFailure(t *testing.T) {
	app := &echoApp{}
	fsm := NewFSM(app)
	apply(fsm, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
	res := apply(fsm, 2, encodeBatch([][]byte{appCmd(t, OpAppFirst, "a"), appCmd(t, OpAppFirst, "disk"), appCmd(t, OpAppFirst, "b")}))
	var af *ApplyFailure
	if err, _ := res.(error); !errors.As(err, &af) || af.Index != 2 {
		t.Fatalf("result %#v, want the apply failure of entry 2", res)
	}
	if fsm.Failure() == nil {
		t.Fatal("the FSM goes on after a local failure in a batch")
	}
	if got := app.list(); len(got) != 1 || got[0].payload != "a" {
		t.Fatalf("applied %v: nothing after the failure may be", got)
	}
	if res := apply(fsm, 3, appCmd(t, OpAppFirst, "c")); res != ErrApplyStopped {
		t.Fatalf("after the failure: %v", res)
	}
}

// batchEchoApp is an echoApp that takes a batch entry's commands in one call (BatchApp).
type batchEchoApp struct {
	echoApp
	calls int
}

func (a *batchEchoApp) ApplyBatch(ops []byte, payloads [][]byte, index uint64) ([]any, error) {
	a.calls++
	out := make([]any, len(ops))
	for i := range ops {
		ix := index
		if i > 0 {
			ix = 0
		}
		out[i] = a.Apply(ops[i], payloads[i], ix)
		if err, ok := out[i].(diskFull); ok {
			return nil, err
		}
	}
	return out, nil
}

// An App with ApplyBatch gets a batch entry in one call, and its error stops the FSM.
func Test_FSM_BatchApp(t *testing.T) {
	app := &batchEchoApp{}
	fsm := NewFSM(app)
	apply(fsm, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
	res := apply(fsm, 2, encodeBatch([][]byte{appCmd(t, OpAppFirst, "a"), appCmd(t, OpAppFirst+1, "no"), appCmd(t, OpAppFirst, "b")}))
	rs, ok := res.([]any)
	if !ok || len(rs) != 3 || rs[0] != "a" || rs[2] != "b" || app.calls != 1 {
		t.Fatalf("results %#v after %d calls", res, app.calls)
	}
	if err, _ := rs[1].(error); err == nil {
		t.Fatalf("the refused command's result: %#v", rs[1])
	}
	if want := []echoed{{byte(OpAppFirst), "a", 2}, {byte(OpAppFirst), "b", 0}}; fmt.Sprint(app.list()) != fmt.Sprint(want) {
		t.Fatalf("applied %v, want %v", app.list(), want)
	}
	var af *ApplyFailure
	if err, _ := apply(fsm, 3, encodeBatch([][]byte{appCmd(t, OpAppFirst, "c"), appCmd(t, OpAppFirst, "disk")})).(error); !errors.As(err, &af) || af.Index != 3 {
		t.Fatalf("a batch whose App failed locally: %v", err)
	}
	if res := apply(fsm, 4, appCmd(t, OpAppFirst, "d")); res != ErrApplyStopped {
		t.Fatalf("after the failure: %v", res)
	}
}

// Concurrent App commands, on the leader and forwarded from a follower, are committed in
// shared entries (group commit): each proposer gets its own command's result, a refusal stays
// its own, and every replica applies the same commands in the same order.
func Test_MultiNode_GroupCommit(t *testing.T) {
	t.Parallel()
	apps := make([]*echoApp, 3)
	nodes := startCluster(t, 3, "group", func(i int, c *Config) {
		apps[i] = &echoApp{}
		c.App = apps[i]
	})
	leader := waitAgreed(t, nodes)
	follower := otherThan(nodes, leader)
	const n = 120
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via, op := leader, OpAppFirst
			if i%2 == 1 {
				via = follower
			}
			if i%10 == 3 {
				op = OpAppFirst + 1 // refused
			}
			want := fmt.Sprintf(`"c%d"`, i)
			res, err := via.r.Apply(ctxT(t, testDeadline), Command{Op: op, Payload: []byte(want[1 : len(want)-1])})
			switch {
			case op == OpAppFirst+1 && !errors.Is(err, ErrRejected):
				errs[i] = fmt.Errorf("command %d: refused by the App, got %v", i, err)
			case op == OpAppFirst && (err != nil || string(res) != want):
				errs[i] = fmt.Errorf("command %d: result %s, %v, want %s", i, res, err, want)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var ref []echoed
	waitUntil(t, testDeadline, "every replica applied every command", func() error {
		for i, a := range apps {
			if got := a.list(); len(got) != n-n/10 {
				return fmt.Errorf("node %d applied %d", i, len(got))
			}
		}
		return nil
	})
	ref = apps[0].list()
	shared := 0
	for _, e := range ref {
		if e.index == 0 {
			shared++ // applied from a batch entry, after its first command
		}
	}
	if shared == 0 {
		t.Fatalf("%d concurrent commands, none shared an entry", n)
	}
	for i, a := range apps[1:] {
		if got := a.list()[:len(ref)]; fmt.Sprint(got) != fmt.Sprint(ref) {
			t.Fatalf("node %d applied another sequence than node 0", i+1)
		}
	}
	t.Logf("%d commands, %d of them after another in a shared entry", n, shared)
	// ApplyGroup: on the leader the commands share an entry; on a follower they are forwarded
	// one by one. Either way each gets its own result, in order.
	var leaderApp *echoApp
	for i, nd := range nodes {
		if nd == leader {
			leaderApp = apps[i]
		}
	}
	for _, via := range []*testNode{leader, follower} {
		before := len(leaderApp.list())
		cmds := []Command{{Op: OpAppFirst, Payload: []byte("g1")}, {Op: OpAppFirst + 1, Payload: []byte("no")}, {Op: OpAppFirst, Payload: []byte("g2")}}
		out, errs := via.r.ApplyGroup(ctxT(t, testDeadline), cmds)
		if string(out[0]) != `"g1"` || errs[0] != nil || !errors.Is(errs[1], ErrRejected) || string(out[2]) != `"g2"` || errs[2] != nil {
			t.Fatalf("ApplyGroup via %s: %q %v", via.name, out, errs)
		}
		if via == leader {
			got := leaderApp.list()[before:] // applied on the leader before ApplyGroup returned
			if len(got) != 2 || got[0].index == 0 || got[1].index != 0 {
				t.Fatalf("ApplyGroup on the leader applied %v, want both commands in one entry", got)
			}
		}
	}
	// Commands forwarded at once share the barriers that tell the follower of their commit
	// (nudgeFollowers): a burst of 100 adds one barrier, and one more behind it, not 100.
	first, _ := leader.r.st.logs.LastIndex()
	for range 100 {
		leader.r.nudgeFollowers()
	}
	waitUntil(t, testDeadline, "the barriers committed", func() error {
		leader.r.nudge.mu.Lock()
		defer leader.r.nudge.mu.Unlock()
		if leader.r.nudge.running {
			return errors.New("a barrier is in raft")
		}
		return nil
	})
	last, _ := leader.r.st.logs.LastIndex()
	barriers := 0
	for i := first + 1; i <= last; i++ {
		var l raft.Log
		if err := leader.r.st.logs.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == raft.LogBarrier {
			barriers++
		}
	}
	if barriers == 0 || barriers > 10 { // 2, and maybe a trailing one (trailer.go)
		t.Fatalf("100 nudges appended %d barriers, want 2", barriers)
	}
	// Nobody proposes a batch entry of their own: the leader builds them.
	entry := encodeBatch([][]byte{appCmd(t, OpAppFirst, "x"), appCmd(t, OpAppFirst, "y")})
	if err := leader.r.authorize(follower.h.ID(), entry, testAdminToken); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a forwarded batch entry: %v, want forbidden", err)
	}
	if _, err := follower.r.Apply(ctxT(t, testDeadline), Command{Op: OpBatch, Payload: entry[2:]}); !errors.Is(err, ErrRejected) {
		t.Fatalf("Apply of a batch entry: %v, want ErrRejected", err)
	}
}

// FuzzDecodeBatch: no input panics; what decodes re-encodes identically and fits a log entry.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([][]byte{{1, 0x40, 'a'}, {1, 0x41}})[2:])
	f.Add([]byte{batchFormat, 2, 2, 1, 0x40, 2, 1, 0x40})
	f.Add([]byte{batchFormat, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, p []byte) {
		cmds, err := decodeBatch(p)
		if err != nil {
			return
		}
		raw := make([][]byte, len(cmds))
		for i, c := range cmds {
			if raw[i], err = EncodeCommand(c); err != nil {
				t.Fatalf("command %d decoded but does not encode: %v", i, err)
			}
		}
		if out := encodeBatch(raw); !bytes.Equal(out[2:], p) || len(out) > wire.MaxLogEntry+batchHeader {
			t.Fatalf("re-encoded %x as %x", p, out[2:])
		}
	})
}
