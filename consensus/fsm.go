package consensus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// FSM is raft's state machine, kept thin (rqlite's pattern): Apply hands each
// log entry to applyCommand, Snapshot and Restore (de)serialize the cluster
// state and the App's section. Reads take a copy under a read lock.
type FSM struct {
	mu    sync.RWMutex
	state ClusterState
	app   App
	index atomic.Uint64 // last command or configuration entry seen
	// onRevoke, if set, is called (in its own goroutine) with the peer ID
	// of every node whose key an applied entry revoked.
	onRevoke func(id string)
}

var (
	_ raft.FSM                = (*FSM)(nil)
	_ raft.ConfigurationStore = (*FSM)(nil)
)

// NewFSM returns an FSM with an empty cluster state; app may be nil.
func NewFSM(app App) *FSM {
	return &FSM{state: ClusterState{Nodes: map[string]NodeMeta{}}, app: app}
}

// Apply applies one committed log entry; its return value is the result the
// proposer receives (an error value when the command was refused).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.index.Store(l.Index)
	res := applyCommand(&f.state, f.app, l.Data, l.Index)
	if f.onRevoke != nil && len(l.Data) > 2 && Op(l.Data[1]) == OpMemberRemove {
		var m MemberRemove
		if err := strictUnmarshal(l.Data[2:], &m); err == nil && f.state.Revoked[m.ID] {
			go f.onRevoke(m.ID)
		}
	}
	return res
}

// peerRole returns id's role in the allow-list and whether its key is
// revoked, without copying the state (it runs on every inbound stream).
func (f *FSM) peerRole(id string) (role string, revoked bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.state.Revoked[id] {
		return "", true
	}
	return f.state.Members[id].Role, false
}

// StoreConfiguration only records the index: raft hands configuration
// entries to the FSM goroutine too, and knowing it lets WaitForIndex tell
// when the FSM (not just raft's bookkeeping) has got that far.
func (f *FSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.index.Store(index)
}

// State returns a deep copy of the cluster state.
func (f *FSM) State() ClusterState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.clone()
}

// Snapshot format (versioned, so a newer node can read an older snapshot):
//
//	"HYSN" | version byte (1) | uvarint n | n bytes of ClusterState JSON |
//	section byte (0: no App section, 1: App section) | App bytes to the end
const (
	snapshotMagic   = "HYSN"
	snapshotVersion = 1
	maxStateJSON    = 64 << 20
)

// ErrSnapshotFormat is returned by Restore for data that is not a snapshot
// this version understands.
var ErrSnapshotFormat = errors.New("bad snapshot")

// Snapshot captures the state. It runs on raft's FSM goroutine, so no Apply
// runs meanwhile; the App's section is buffered here for the same reason, and
// written out later by Persist, concurrently with new applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	st := f.state.clone()
	f.mu.RUnlock()
	js, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("snapshot cluster state: %w", err)
	}
	s := &fsmSnapshot{state: js}
	if f.app != nil {
		var buf bytes.Buffer
		if err := f.app.Snapshot(&buf); err != nil {
			return nil, fmt.Errorf("snapshot app state: %w", err)
		}
		s.app, s.hasApp = buf.Bytes(), true
	}
	return s, nil
}

// Restore replaces the state with a snapshot's. Arbitrary input yields an
// error, never a panic (fuzzed); the state is swapped only when all of it
// decoded.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReader(rc)
	hdr := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("%w: header: %v", ErrSnapshotFormat, err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a hydra snapshot", ErrSnapshotFormat)
	}
	if v := hdr[len(snapshotMagic)]; v != snapshotVersion {
		return fmt.Errorf("%w: version %d, this node reads %d", ErrSnapshotFormat, v, snapshotVersion)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > maxStateJSON {
		return fmt.Errorf("%w: state length", ErrSnapshotFormat)
	}
	// Read through a limit instead of allocating n bytes up front: a short,
	// hostile input cannot make us allocate 64 MiB.
	js, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil || uint64(len(js)) != n {
		return fmt.Errorf("%w: truncated state", ErrSnapshotFormat)
	}
	var st ClusterState
	if err := json.Unmarshal(js, &st); err != nil {
		return fmt.Errorf("%w: state: %v", ErrSnapshotFormat, err)
	}
	if st.Nodes == nil {
		st.Nodes = map[string]NodeMeta{}
	}
	st.upgradeToken()
	section, err := r.ReadByte()
	if err != nil || section > 1 {
		return fmt.Errorf("%w: section marker", ErrSnapshotFormat)
	}
	if f.app != nil {
		var src io.Reader = r
		if section == 0 {
			src = bytes.NewReader(nil)
		}
		if err := f.app.Restore(src); err != nil {
			return fmt.Errorf("restore app state: %w", err)
		}
	}
	f.mu.Lock()
	f.state = st
	f.mu.Unlock()
	return nil
}

type fsmSnapshot struct {
	state  []byte
	app    []byte
	hasApp bool
}

// Persist writes the snapshot in the format Restore reads.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := func() error {
		w := bufio.NewWriter(sink)
		w.WriteString(snapshotMagic)
		w.WriteByte(snapshotVersion)
		var n [binary.MaxVarintLen64]byte
		w.Write(n[:binary.PutUvarint(n[:], uint64(len(s.state)))])
		w.Write(s.state)
		if s.hasApp {
			w.WriteByte(1)
			w.Write(s.app)
		} else {
			w.WriteByte(0)
		}
		return w.Flush() // bufio keeps the first error
	}()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the snapshot holds only copies.
func (s *fsmSnapshot) Release() {}
