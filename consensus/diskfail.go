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
// One write raft cannot take failing: a new term (setCurrentTerm panics when the stable store
// refuses it, so the whole process died with a panic at the next election; so could a full
// disk's, had the stable store's write met it). That write is held instead (holdTerm): retried
// while the disk is full, held on a failing one until the node stops, when the goroutine that
// asked for it ends there.

// DiskFailure is what Config.OnDiskFailure receives: the first write of raft's stores that
// failed in a way no wait cures (see diskFailed).
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

// failWatch calls its callback, once, at the first store write that diskFailed.
type failWatch struct {
	dir    string
	fn     atomic.Pointer[func(*DiskFailure)]
	once   sync.Once
	closed <-chan struct{} // closed when the node's raft stops (Raft.closed); set before raft starts
}

// check returns err, reporting it first if it is the first disk failure.
func (w *failWatch) check(err error) error {
	if !diskFailed(err) {
		return err
	}
	w.once.Do(func() {
		if fn := w.fn.Load(); fn != nil {
			go (*fn)(&DiskFailure{Dir: w.dir, Err: err})
		}
	})
	return err
}

// watchedLogs is raft's log store with its writes watched (failWatch).
type watchedLogs struct {
	raft.LogStore
	w *failWatch
}

var _ raft.MonotonicLogStore = watchedLogs{}

func (l watchedLogs) StoreLog(e *raft.Log) error { return l.w.check(l.LogStore.StoreLog(e)) }

func (l watchedLogs) StoreLogs(es []*raft.Log) error { return l.w.check(l.LogStore.StoreLogs(es)) }

func (l watchedLogs) DeleteRange(min, max uint64) error {
	return l.w.check(l.LogStore.DeleteRange(min, max))
}

// IsMonotonic passes on the wrapped store's answer (raft-wal's: true), which raft reads to
// clear the whole log after a snapshot is installed.
func (l watchedLogs) IsMonotonic() bool {
	m, ok := l.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
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
