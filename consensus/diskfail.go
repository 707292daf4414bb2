package consensus

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// A disk that fails.
//
// A full disk passes: raft keeps retrying the appends it could not store, the leader counts
// the voter unreachable meanwhile, and the node waits for space (node/diskspace.go). A disk that
// fails does not: a worn SD card or a dying disk makes the kernel remount its file system
// read-only (ext4's errors=remount-ro, the default of Debian and Raspberry Pi OS), and every
// later write fails with EROFS (or EIO) until someone checks the disk. raft only logs each
// failed append, so such a voter stayed a member that looked healthy (online, idle, its
// announcements flowing) while it stored, applied and voted for nothing: a seat of the quorum
// lost without a sign but raft's error lines on that machine.
//
// So raft's log and stable store report the first write that fails so (Config.OnDiskFailure),
// and the node stops with what to do; the cluster then sees a node gone, which it knows how to
// handle (its chunks reassigned, a new leader elected if it led, autopilot's repairs).
//
// A disk that fails reads (a bad block of a worn SD card answers EIO, or gives back bytes whose
// checksum no longer holds) is no better: raft's log is read back when a lagging follower needs
// older entries than the cache holds, when entries are applied that are not cached, and at every
// start. raft answered such a read with a panic on its main goroutine (applying) and at start
// (NewRaft's scan of the log), and on the leader's replication goroutine with an error line and
// nothing more: a follower that needed those entries never caught up while that leader led on.
// So a read that fails for any reason but the entry's absence is reported as well (watchedLogs);
// raft's own reads of a running node are then held until the node stops (heldLogs), and at start
// the replay and NewRaft's scan end in an error that names the entry, not in a panic.
//
// One write raft cannot take failing: a new term (setCurrentTerm panics when the stable store
// refuses it, so the whole process died with a panic at the next election; so could a full
// disk's, had the stable store's write met it). That write is held instead (holdTerm): retried
// while the disk is full, held on a failing one until the node stops, when the goroutine that
// asked for it ends there.

// DiskFailure is what Config.OnDiskFailure receives: the first write of raft's stores that
// failed in a way no wait cures (see diskFailed), or the first read of its log that failed
// (unreadable).
type DiskFailure struct {
	Dir string // raft's directory, DATA/raft
	Err error
}

func (e *DiskFailure) Error() string {
	return fmt.Sprintf("raft storage in %s failed: %v", e.Dir, e.Err)
}

func (e *DiskFailure) Unwrap() error { return e.Err }

// diskFailed reports whether err says the file system cannot take writes any more: read-only
// (EROFS, a failing disk remounted so by the kernel) or an I/O error (EIO). ENOSPC is not one:
// a full disk is waited out.
func diskFailed(err error) bool {
	return err != nil && (errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO))
}

// diskIsFull reports whether err says the disk is full: ENOSPC or EDQUOT, or on Windows
// ERROR_DISK_FULL (112) and ERROR_HANDLE_DISK_FULL (39), which package syscall does not name
// there.
func diskIsFull(err error) bool {
	errno, ok := errors.AsType[syscall.Errno](err)
	if !ok {
		return false
	}
	if runtime.GOOS == "windows" {
		return errno == 112 || errno == 39
	}
	return errno == syscall.ENOSPC || errno == syscall.EDQUOT
}

// unreadable reports whether err, from reading an entry of raft's log, says the disk failed: any
// error but the entry's absence (compacted, or not written yet: raft's ErrLogNotFound, on which
// it sends a snapshot instead) and the store's being closed (a read racing the node's stop). An
// I/O error, a checksum that does not hold (raft-wal's ErrCorrupt) or an entry that does not
// decode all mean the bytes the disk gives back are not those written.
func unreadable(err error) bool {
	return err != nil && !errors.Is(err, raft.ErrLogNotFound) && !errors.Is(err, wal.ErrClosed)
}

// failWatch calls its callback, once, at the first store write that diskFailed or the first log
// read that is unreadable.
type failWatch struct {
	dir     string
	fn      atomic.Pointer[func(*DiskFailure)]
	once    sync.Once
	failure atomic.Pointer[DiskFailure] // the first one, reported or not
	closed  <-chan struct{}             // closed when the node's raft stops (Raft.closed); set before raft starts
	running atomic.Bool                 // raft.NewRaft has returned: its goroutines read the log (heldLogs)
}

// check returns err, reporting it first if it is the first disk failure.
func (w *failWatch) check(err error) error {
	if diskFailed(err) {
		w.report(&DiskFailure{Dir: w.dir, Err: err})
	}
	return err
}

// report notes df and passes it to the callback if it is the first disk failure.
func (w *failWatch) report(df *DiskFailure) {
	w.once.Do(func() {
		w.failure.Store(df)
		if fn := w.fn.Load(); fn != nil {
			go (*fn)(df)
		}
	})
}

// readFailure is the DiskFailure of reading entry index that failed with err (unreadable).
func (w *failWatch) readFailure(index uint64, err error) *DiskFailure {
	return &DiskFailure{Dir: w.dir, Err: fmt.Errorf("read raft log entry %d: %w", index, err)}
}

// watchedLogs is raft's log store with its writes watched (failWatch).
type watchedLogs struct {
	raft.LogStore
	w *failWatch
}

var _ raft.MonotonicLogStore = watchedLogs{}

// GetLog reads entry index, reporting a read that failed (unreadable): the node's own reads
// (the replay at start, read barriers, autopilot's stats) then get the error, raft's are held
// (heldLogs).
func (l watchedLogs) GetLog(index uint64, e *raft.Log) error {
	err := l.LogStore.GetLog(index, e)
	if unreadable(err) {
		l.w.report(l.w.readFailure(index, err))
	}
	return err
}

func (l watchedLogs) StoreLog(e *raft.Log) error { return l.w.check(l.LogStore.StoreLog(e)) }

func (l watchedLogs) StoreLogs(es []*raft.Log) error { return l.w.check(l.LogStore.StoreLogs(es)) }

func (l watchedLogs) DeleteRange(min, max uint64) error {
	return l.w.check(l.LogStore.DeleteRange(min, max))
}

// IsMonotonic passes on the wrapped store's answer (raft-wal's: true), which raft reads to
// clear the whole log after a snapshot is installed.
func (l watchedLogs) IsMonotonic() bool { return monotonic(l.LogStore) }

// monotonic is s's answer to raft.MonotonicLogStore's IsMonotonic, false if it has none.
func monotonic(s raft.LogStore) bool {
	m, ok := s.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// heldLogs is the log store raft is given: the node's (its cache over watchedLogs) with raft's
// reads that fail held. raft answers a failed read with a panic on its main goroutine (applying
// entries, checking an append's previous entry) and cannot go on without the entry on any other,
// so once raft runs such a read waits for the node's raft to stop (the failure is reported: the
// node stops), and then ends the goroutine that made it, as holdTerm does. Before raft runs (its
// NewRaft scan of the log) the error goes back: New turns NewRaft's panic into its error
// (newRaft).
type heldLogs struct {
	raft.LogStore
	w *failWatch
}

var _ raft.MonotonicLogStore = heldLogs{}

func (l heldLogs) GetLog(index uint64, e *raft.Log) error {
	err := l.LogStore.GetLog(index, e)
	if unreadable(err) && l.w.running.Load() { // reported by watchedLogs, under the cache
		<-l.w.closed
		runtime.Goexit()
	}
	return err
}

// IsMonotonic passes on the wrapped store's answer (see watchedLogs.IsMonotonic).
func (l heldLogs) IsMonotonic() bool { return monotonic(l.LogStore) }

// newRaft is raft.NewRaft with logs as heldLogs over st's, and with the panic NewRaft answers a
// failed read of the log with (its scan for configuration entries) turned into the failure
// reported. Any other panic goes on.
func newRaft(rc *raft.Config, fsm raft.FSM, st *stores, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			df := st.watch.failure.Load()
			if df == nil {
				panic(p)
			}
			r, err = nil, df
		}
	}()
	r, err = raft.NewRaft(rc, fsm, heldLogs{st.logs, st.watch}, watchedStable{st.bolt, st.watch}, st.snaps, trans)
	if err == nil {
		st.watch.running.Store(true)
	}
	return r, err
}

// watchedStable is raft's stable store (terms and votes) with its writes watched.
type watchedStable struct {
	raft.StableStore
	w *failWatch
}

func (s watchedStable) Set(k, v []byte) error { return s.w.check(s.StableStore.Set(k, v)) }

// keyCurrentTerm is the stable store key of raft's current term (hashicorp/raft's own).
const keyCurrentTerm = "CurrentTerm"

// termRetry is how often a term write that failed on a full disk is tried again.
const termRetry = time.Second

func (s watchedStable) SetUint64(k []byte, v uint64) error {
	err := s.w.check(s.StableStore.SetUint64(k, v))
	if err == nil || string(k) != keyCurrentTerm {
		return err
	}
	return s.holdTerm(k, v, err)
}

// holdTerm stands in for a failed write of raft's current term, which raft answers with a panic
// (see A disk that fails). It runs on the goroutine raft wrote the term from: its main one, or a
// connection's handler for a heartbeat at a higher term (raft's fast path). It tries the write
// again every termRetry while the error is anything but a failing disk (a full one frees up),
// returning once it succeeds. On a failing disk (reported by check) it waits for the node's raft
// to stop. Once it stops, either way, it ends that goroutine (runtime.Goexit: its deferred calls
// run, raft's bookkeeping that lets Shutdown return, or the handler's closing its connection).
func (s watchedStable) holdTerm(k []byte, v uint64, err error) error {
	t := time.NewTicker(termRetry)
	defer t.Stop()
	for !diskFailed(err) {
		select {
		case <-s.w.closed:
			runtime.Goexit()
		case <-t.C:
		}
		if err = s.w.check(s.StableStore.SetUint64(k, v)); err == nil {
			return nil
		}
	}
	<-s.w.closed
	runtime.Goexit()
	return err
}
