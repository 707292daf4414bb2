package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hydra-compute/hydra/wire"
)

// testApp is a minimal App: it appends payloads and snapshots them as JSON.
type testApp struct{ Items []string }

func (a *testApp) Apply(op byte, payload []byte, index uint64) any {
	var s string
	if err := json.Unmarshal(payload, &s); err != nil {
		return err
	}
	a.Items = append(a.Items, s)
	return len(a.Items)
}

func (a *testApp) Snapshot(w io.Writer) error { return json.NewEncoder(w).Encode(a.Items) }

func (a *testApp) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	a.Items = nil
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, &a.Items)
}

func mustCmd(t testing.TB, op Op, v any) []byte {
	t.Helper()
	c, err := NewCommand(op, v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func apply(f *FSM, index uint64, data []byte) any {
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
}

func Test_Command_RoundTrip(t *testing.T) {
	b := mustCmd(t, OpNodeRemove, NodeRemove{ID: "x"})
	if b[0] != CommandVersion || b[1] != byte(OpNodeRemove) {
		t.Fatalf("header %x", b[:2])
	}
	c, err := DecodeCommand(b)
	if err != nil || c.Op != OpNodeRemove || string(c.Payload) != `{"id":"x"}` {
		t.Fatalf("decode: %+v %v", c, err)
	}
	for name, in := range map[string][]byte{
		"empty":    nil,
		"short":    {1},
		"version":  {2, 1, '{', '}'},
		"op":       {1, 0x20, '{', '}'},
		"not json": {1, 1, '{'},
		"too big":  append([]byte{1, 0x40}, bytes.Repeat([]byte(" "), wire.MaxLogEntry)...),
	} {
		if _, err := DecodeCommand(in); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := EncodeCommand(Command{Op: 0x10}); !errors.Is(err, ErrCommandOp) {
		t.Errorf("encode unknown op: %v", err)
	}
}

func Test_FSM_ClusterOps(t *testing.T) {
	f := NewFSM(nil)
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	in := ClusterInit{ClusterID: "c1", Token: "t1", Voters: 3, ChunkTarget: 2 * time.Second, Created: created}
	if res := apply(f, 1, mustCmd(t, OpInit, in)); res != nil {
		t.Fatalf("init: %v", res)
	}
	res := apply(f, 2, mustCmd(t, OpInit, ClusterInit{ClusterID: "c2", Token: "t2"}))
	if err, ok := res.(error); !ok || !errors.Is(err, ErrRejected) {
		t.Fatalf("second init: %v", res)
	}
	m := NodeMeta{ID: "p1", Name: "box", OS: "linux", Arch: "arm64", Cores: 4, Voter: VoterPrefer}
	if res := apply(f, 3, mustCmd(t, OpNodeRegister, m)); res != nil {
		t.Fatalf("register: %v", res)
	}
	st := f.State()
	if st.ClusterID != "c1" || st.Token != "" || !st.IsAdmin("t1") || !st.Created.Equal(created) || st.Nodes["p1"] != m {
		t.Fatalf("state %+v", st)
	}
	st.Nodes["p1"] = NodeMeta{} // a copy: must not touch the FSM
	if f.State().Nodes["p1"] != m {
		t.Fatal("State shares its map")
	}
	if res := apply(f, 4, mustCmd(t, OpNodeRemove, NodeRemove{ID: "p1"})); res != nil {
		t.Fatalf("remove: %v", res)
	}
	if _, ok := f.State().Nodes["p1"]; ok {
		t.Fatal("not removed")
	}
	for i, bad := range [][]byte{
		{1, byte(OpNodeRegister), 'n', 'u', 'l', 'l'},
		mustCmd(t, OpNodeRegister, NodeMeta{}),
		mustCmd(t, OpNodeRegister, map[string]any{"id": "x", "cores": -1}),
		mustCmd(t, OpAppFirst, "no app"),
		{9, 9},
	} {
		if err, ok := apply(f, uint64(10+i), bad).(error); !ok || !errors.Is(err, ErrRejected) {
			t.Errorf("bad command %d: result %v", i, err)
		}
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	return sink.Bytes()
}

func Test_FSM_SnapshotRestore(t *testing.T) {
	app := &testApp{}
	f := NewFSM(app)
	apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
	apply(f, 2, mustCmd(t, OpNodeRegister, NodeMeta{ID: "p", Name: "n"}))
	if res := apply(f, 3, mustCmd(t, OpAppFirst+1, "job")); res != 1 {
		t.Fatalf("app result %v", res)
	}
	data := snapshotBytes(t, f)

	app2 := &testApp{Items: []string{"stale"}}
	g := NewFSM(app2)
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if st := g.State(); st.ClusterID != "c" || st.Nodes["p"].Name != "n" {
		t.Fatalf("restored %+v", st)
	}
	if len(app2.Items) != 1 || app2.Items[0] != "job" {
		t.Fatalf("app restored %v", app2.Items)
	}
	// A snapshot without an App section resets the App; a node without an
	// App ignores the section.
	h := NewFSM(nil)
	if err := h.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h)))); err != nil || len(app2.Items) != 0 {
		t.Fatalf("restore without app section: %v %v", err, app2.Items)
	}
	// Versioned: another version or garbage is refused, state untouched.
	bad := append([]byte{}, data...)
	bad[len(snapshotMagic)] = 2
	if err := g.Restore(io.NopCloser(bytes.NewReader(bad))); !errors.Is(err, ErrSnapshotFormat) {
		t.Fatalf("version 2: %v", err)
	}
	if g.State().ClusterID != "c" {
		t.Fatal("failed restore changed the state")
	}
}

// FuzzDecodeCommand: no input panics; what decodes re-encodes identically.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte{1, 1, '{', '}'})
	f.Add([]byte{1, 0x40, '"', 'x', '"'})
	f.Add([]byte{1, 2, 'n', 'u', 'l', 'l'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		out, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("decoded %x but cannot re-encode: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x as %x", b, out)
		}
	})
}

// FuzzFSMApply feeds arbitrary log data to an initialized FSM with an App:
// no panic, and a refused command leaves the cluster state as it was.
func FuzzFSMApply(f *testing.F) {
	f.Add([]byte{1, byte(OpNodeRegister), '{', '"', 'i', 'd', '"', ':', '"', 'a', '"', '}'})
	f.Add([]byte{1, byte(OpNodeRemove), '{', '}'})
	f.Add([]byte{1, byte(OpInit), '{', '}'})
	f.Add([]byte{1, 0x41, '1'})
	f.Add(encodeBatch([][]byte{{1, 0x40, '"', 'a', '"'}, {1, 0x41, '1'}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fsm := NewFSM(&testApp{})
		apply(fsm, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
		before, _ := json.Marshal(fsm.State())
		res := apply(fsm, 2, b)
		if _, isErr := res.(error); isErr {
			after, _ := json.Marshal(fsm.State())
			if !bytes.Equal(before, after) {
				t.Fatalf("refused command %x changed the state", b)
			}
		}
	})
}

// FuzzFSMRestore feeds arbitrary bytes to Restore: no panic, a failed
// restore leaves the state untouched, and a restored state's settings are
// within today's bounds (clampRestored).
func FuzzFSMRestore(f *testing.F) {
	good := NewFSM(&testApp{})
	apply(good, 1, mustCmd(f, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
	apply(good, 2, mustCmd(f, OpAppFirst, "x"))
	f.Add(snapshotBytes(f, good))
	f.Add([]byte("HYSN\x01\x02{}\x00"))
	f.Add([]byte("HYSN\x01\xff\xff\xff\xff\x0f"))
	f.Add([]byte("HYSN\x01\x82\x00{}\x00")) // overlong length
	f.Add(snapshotOf([]byte(`{"cluster_id":"c","voters":-1,"chunk_target":-1,"admit":"x","settings":{"retention":1,"disk_cap":-1,"max_jobs":0}}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		fsm := NewFSM(&testApp{})
		apply(fsm, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "orig", Token: "t"}))
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			if fsm.State().ClusterID != "orig" {
				t.Fatal("failed restore changed the state")
			}
			return
		}
		st := fsm.State()
		if err := st.EffectiveSettings().Validate(); err != nil {
			t.Fatalf("restored settings out of bounds: %v", err)
		}
		if st.Voters < 0 || st.Voters > maxVoters || st.ChunkTarget < 0 || st.Admit != "" && st.Admit != AdmitApproval && st.Admit != AdmitLAN {
			t.Fatalf("restored voters %d, chunk target %v, admit %q", st.Voters, st.ChunkTarget, st.Admit)
		}
	})
}

// TestPeerRoleDoesNotWaitForApply: the allow-list check of inbound streams and raft RPCs,
// heartbeats included, answers while an apply holds the FSM (the job state's disk writes can
// take a while, and a heartbeat waiting for them makes the leader step down), and it sees what
// the last entry changed.
func TestPeerRoleDoesNotWaitForApply(t *testing.T) {
	f := NewFSM(nil)
	good := DefaultSettings()
	if res := apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t", Founder: "a", Settings: &good})); res != nil {
		t.Fatalf("init: %v", res)
	}
	if res := apply(f, 2, mustCmd(t, OpMemberAdd, MemberAdd{ID: "w", Role: RoleWorker, At: time.Unix(1e9, 0).UTC()})); res != nil {
		t.Fatalf("add: %v", res)
	}
	if role, revoked := f.peerRole("w"); role != RoleWorker || revoked {
		t.Fatalf("w: %q %v", role, revoked)
	}
	f.mu.Lock() // an apply in progress
	done := make(chan string, 1)
	go func() { role, _ := f.peerRole("a"); done <- role }()
	select {
	case role := <-done:
		if role != RoleMember {
			t.Errorf("a: %q", role)
		}
	case <-time.After(10 * time.Second):
		t.Error("peerRole waited for the apply")
	}
	f.mu.Unlock()
	if res := apply(f, 3, mustCmd(t, OpMemberRemove, MemberRemove{ID: "w", Revoke: true})); res != nil {
		t.Fatalf("remove: %v", res)
	}
	if _, revoked := f.peerRole("w"); !revoked {
		t.Fatal("a revoked key still passes")
	}
}
