package consensus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/hydra-compute/hydra/wire"
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
	// of every node whose key an applied entry, or a restored snapshot,
	// revoked.
	onRevoke func(id string)

	// failed is set when a committed entry could not be applied for a
	// local reason (see LocalFailure): from then on nothing is applied, so
	// this replica never moves on from a state the others do not have.
	failed  atomic.Pointer[ApplyFailure]
	onFatal func(*ApplyFailure) // called once, in its own goroutine

	// replayed is the last entry re-applied from the local log at start
	// (replay.go), under mu: raft hands those entries over again once a
	// leader is known, and they are skipped; 0 once raft has caught up.
	replayed uint64

	// roles is the allow-list as of the last applied entry, read without mu
	// (peerRole): every inbound stream and every raft RPC, heartbeats
	// included, is checked against it, and Apply holds mu through the job
	// state's disk writes, which must not delay a heartbeat's answer.
	roles atomic.Pointer[peerRoles]
	// onRoles, if set, is called (under mu, so it must not block) each
	// time roles is replaced.
	onRoles func()
	// onIndex, if set, is called (under mu, so it must not block) with the
	// index of each command or configuration entry once f.index has it.
	onIndex func(index uint64)

	// log receives Restore's warnings (a setting out of bounds); never nil.
	log *slog.Logger
}

// peerRoles is the FSM's members' roles and revoked keys (FSM.roles).
type peerRoles struct {
	role    map[string]string
	revoked map[string]bool
}

// publishRolesLocked makes the allow-list of f.state the one peerRole reads (mu held).
func (f *FSM) publishRolesLocked() {
	pr := &peerRoles{role: make(map[string]string, len(f.state.Members)), revoked: maps.Clone(f.state.Revoked)}
	for id, m := range f.state.Members {
		pr.role[id] = m.Role
	}
	f.roles.Store(pr)
	if f.onRoles != nil {
		f.onRoles()
	}
}

// LocalFailure is implemented by errors an App's Apply returns when the
// node, not the command, is at fault: its disk is full or failing, so a
// committed entry that every other replica applies could not be applied
// here (compute.StorageError), or its build is older than the op's
// (compute.UnknownOpError; see UnknownOp). Going on would make this replica diverge
// for good; the FSM stops applying instead and the node stops (see
// Config.OnFatal). After a restart raft replays the log from the latest
// snapshot, and the entry is applied again.
type LocalFailure interface {
	error
	LocalFailure() bool
}

// ApplyFailure is what OnFatal receives: the entry that could not be
// applied and why.
type ApplyFailure struct {
	Index uint64
	Err   error
}

func (e *ApplyFailure) Error() string {
	return fmt.Sprintf("applying committed raft entry %d failed on this node: %v", e.Index, e.Err)
}

func (e *ApplyFailure) Unwrap() error { return e.Err }

// ErrApplyStopped is the result of every entry after an ApplyFailure.
var ErrApplyStopped = errors.New("this node stopped applying the raft log after a local failure")

// Failure returns the local failure that stopped the FSM, or nil.
func (f *FSM) Failure() *ApplyFailure { return f.failed.Load() }

var (
	_ raft.FSM                = (*FSM)(nil)
	_ raft.ConfigurationStore = (*FSM)(nil)
)

// NewFSM returns an FSM with an empty cluster state; app may be nil.
func NewFSM(app App) *FSM {
	return &FSM{state: ClusterState{Nodes: map[string]NodeMeta{}}, app: app, log: slog.New(slog.DiscardHandler)}
}

// Apply applies one committed log entry; its return value is the result the
// proposer receives (an error value when the command was refused).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if f.failed.Load() != nil {
		return ErrApplyStopped
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.skipReplayed(l.Index) {
		return nil
	}
	res := applyCommand(&f.state, f.app, l.Data, l.Index)
	if len(l.Data) > 1 && Op(l.Data[1]) < OpBatch { // a cluster op: it may change who is a member
		f.publishRolesLocked()
	}
	var lf LocalFailure
	if err, ok := res.(error); ok && errors.As(err, &lf) && lf.LocalFailure() {
		af := &ApplyFailure{Index: l.Index, Err: err}
		if f.failed.CompareAndSwap(nil, af) && f.onFatal != nil {
			go f.onFatal(af)
		}
		return af
	}
	f.index.Store(l.Index)
	if f.onIndex != nil {
		f.onIndex(l.Index)
	}
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
	pr := f.roles.Load()
	if pr == nil {
		return "", false
	}
	if pr.revoked[id] {
		return "", true
	}
	return pr.role[id], false
}

// StoreConfiguration only records the index: raft hands configuration
// entries to the FSM goroutine too, and knowing it lets WaitForIndex tell
// when the FSM (not just raft's bookkeeping) has got that far.
func (f *FSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.skipReplayed(index) {
		f.index.Store(index)
		if f.onIndex != nil {
			f.onIndex(index)
		}
	}
}

// skipReplayed reports whether the entry at index was already applied by
// the replay at start (replay.go), and notes when raft has caught up with
// it. Called with mu held.
func (f *FSM) skipReplayed(index uint64) bool {
	if f.replayed == 0 {
		return false
	}
	if index < f.replayed {
		return true
	}
	skip := index == f.replayed
	f.replayed = 0
	return skip
}

// setReplayed records the last entry the replay at start applied.
func (f *FSM) setReplayed(index uint64) {
	f.mu.Lock()
	f.replayed = index
	f.mu.Unlock()
}

// errCatchingUp refuses a snapshot while raft has not yet handed over the
// entries the replay at start applied: raft would label it with an older
// index than its content.
var errCatchingUp = errors.New("snapshot: raft has not caught up with the log replayed at start yet")

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
// runs meanwhile. The App's section is captured (SnapshotCapturer: a view
// written out later by Persist, concurrently with new applies, streaming)
// or, for an App without it, buffered here.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	// After a local failure raft still counts the entries it handed over as applied: a
	// snapshot would label the state before the failure with a later index, and a restart
	// from it would skip the entries this replica never applied (hydra recover too).
	if af := f.failed.Load(); af != nil {
		return nil, fmt.Errorf("snapshot: %w", af)
	}
	f.mu.RLock()
	st := snapshotState{ClusterState: f.state.clone(), Index: f.index.Load()}
	catchingUp := f.replayed != 0
	f.mu.RUnlock()
	if catchingUp {
		return nil, errCatchingUp
	}
	js, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("snapshot cluster state: %w", err)
	}
	if len(js) > maxStateJSON {
		return nil, fmt.Errorf("snapshot cluster state: %d bytes, over the limit of %d that restore accepts", len(js), maxStateJSON)
	}
	s := &fsmSnapshot{state: js}
	switch app := f.app.(type) {
	case nil:
	case SnapshotCapturer:
		if s.view, err = app.CaptureSnapshot(); err != nil {
			return nil, fmt.Errorf("snapshot app state: %w", err)
		}
		s.hasApp = true
	default:
		var buf bytes.Buffer
		if err := app.Snapshot(&buf); err != nil {
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
	n, err := wire.ReadUvarint(r) // shortest form only, as writeSnapshot writes it
	if err != nil || n > maxStateJSON {
		return fmt.Errorf("%w: state length", ErrSnapshotFormat)
	}
	// Read through a limit instead of allocating n bytes up front: a short,
	// hostile input cannot make us allocate 64 MiB.
	js, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil || uint64(len(js)) != n {
		return fmt.Errorf("%w: truncated state", ErrSnapshotFormat)
	}
	var ss snapshotState
	if err := json.Unmarshal(js, &ss); err != nil {
		return fmt.Errorf("%w: state: %v", ErrSnapshotFormat, err)
	}
	st := ss.ClusterState
	if st.Nodes == nil {
		st.Nodes = map[string]NodeMeta{}
	}
	st.upgradeToken()
	clampRestored(&st, f.log)
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
			return &appRestoreError{err: err}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var revoked []string // revoked by entries this replica never applied: told as Apply tells its own
	for id, r := range st.Revoked {
		if r && !f.state.Revoked[id] {
			revoked = append(revoked, id)
		}
	}
	f.state = st
	f.replayed = 0 // a snapshot from the leader: raft applies what follows it
	f.publishRolesLocked()
	f.restoredIndexLocked(ss.Index)
	if f.onRevoke != nil && len(revoked) > 0 {
		go func() {
			for _, id := range revoked {
				f.onRevoke(id)
			}
		}()
	}
	return nil
}

// appRestoreError is Restore's error when the App's section failed: the App may then hold a part
// of the snapshot (compute.JobStore.Restore empties its result store first), beside the cluster
// state of before.
type appRestoreError struct{ err error }

func (e *appRestoreError) Error() string { return "restore app state: " + e.err.Error() }
func (e *appRestoreError) Unwrap() error { return e.err }

// installFailed stops the FSM after a snapshot the leader sent failed to restore in the App's
// section (err, from Restore), as after a local failure to apply an entry: raft only logs a
// failed install and goes on, so the replica served a state the cluster never had (the App's
// part of the snapshot beside its own old state: jobs listed whose results were gone) and
// retried the install for as long as it failed, a disk too full for the results or a
// snapshot this build refuses, while it looked healthy. The node stops (OnFatal); at its
// restart the replay restores the snapshot again from disk (replay.go), or says what to do.
func (f *FSM) installFailed(err error) {
	if _, ok := errors.AsType[*appRestoreError](err); !ok {
		return // the cluster state did not decode: nothing was changed
	}
	af := &ApplyFailure{Index: f.index.Load(), Err: fmt.Errorf("restoring the snapshot the leader sent: %w", err)}
	if f.failed.CompareAndSwap(nil, af) && f.onFatal != nil {
		go f.onFatal(af)
	}
}

// snapshotState is the state section of a snapshot: the cluster state and the index of the
// last command or configuration entry applied to it. raft does not hand Restore the
// snapshot's metadata, so without the index a restored replica's FSM index would lag by the
// cluster's whole history until its next entry: its applied mark stays behind, and a joiner
// keeps trusting its admission answer over its replica's roles (Raft.expects). Snapshots of
// older builds have no index (0); the replica then keeps the index it had, and a restore at
// start takes the snapshot's own (replayApplied). Older builds ignore the field.
type snapshotState struct {
	ClusterState
	Index uint64 `json:"applied_index,omitempty"`
}

// restoredThrough raises the FSM's index to index, that of the snapshot restored at start
// (replayApplied), which raft's metadata knows whether or not the snapshot's own data does.
func (f *FSM) restoredThrough(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index > f.index.Load() {
		f.restoredIndexLocked(index)
	}
}

// restoredIndexLocked sets the FSM's index to a restored snapshot's (mu held): the state is
// now that of the entry at index, even where raft sent an older snapshot than this replica had
// applied (raft then applies the later entries again). A snapshot without an index (0) leaves
// the index as it was.
func (f *FSM) restoredIndexLocked(index uint64) {
	if index == 0 {
		return
	}
	f.index.Store(index)
	if f.onIndex != nil {
		f.onIndex(index)
	}
}

type fsmSnapshot struct {
	state  []byte
	app    []byte      // a buffered App section
	view   AppSnapshot // or a captured one, streamed by Persist (its Release is idempotent)
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
		if !s.hasApp {
			w.WriteByte(0)
			return w.Flush() // bufio keeps the first error
		}
		w.WriteByte(1)
		if s.view == nil {
			w.Write(s.app)
			return w.Flush()
		}
		// Released as soon as it is written, not only by Release: raft's
		// RecoverCluster never calls Release, and an open read transaction
		// of the App's store would block its Close.
		defer s.view.Release()
		if err := w.Flush(); err != nil {
			return err
		}
		_, err := s.view.WriteTo(sink)
		return err
	}()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release ends a captured App view (a buffered snapshot holds only copies).
func (s *fsmSnapshot) Release() {
	if s.view != nil {
		s.view.Release()
	}
}
