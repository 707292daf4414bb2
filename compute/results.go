package compute

import (
	"cmp"
	"errors"
	"maps"
	"math"
	"slices"
	"sync"
)

// StoredResult is one accepted chunk's result payload (compressed, as the worker sent it) as a
// ResultStore keeps it.
type StoredResult struct {
	Chunk
	Payload []byte
}

// ResultStore keeps the result payloads of accepted chunks, by job and range start, outside the
// job state's memory (docs/design.md §2). The job state is its only user and calls it with its
// own lock held, except through a ResultView. It is an interface so that compute stays pure:
// the node plugs in a store on disk (internal/resultstore, bbolt), tests and tools a memory one
// (NewMemResults). The store is not the durable copy (the raft log and snapshots are), so an
// implementation need not sync.
type ResultStore interface {
	// Put stores every record or none; a record replaces one of the same job and range start.
	Put(recs []StoredResult) error
	// Get returns job's record that starts at start.
	Get(job string, start uint64) (StoredResult, bool, error)
	// Delete removes job's record that starts at start, if there is one.
	Delete(job string, start uint64) error
	// DeleteJob removes every record of job.
	DeleteJob(job string) error
	// Clear removes every record.
	Clear() error
	// View opens a consistent read-only view of the records as they are now: writes made after
	// it do not show in it. Release it when done (a view may hold the store's old pages).
	View() (ResultView, error)
	// Close releases the store.
	Close() error
}

// ResultView is a ResultStore's records as of one moment. Payloads it hands out are valid until
// Release; copy what must outlive the view.
type ResultView interface {
	// Each calls fn for each of job's records in order of range start, stopping at fn's first
	// error, which it returns.
	Each(job string, fn func(StoredResult) error) error
	// Around returns job's record with the largest range start ≤ at (found false if none), and
	// the smallest range start > at (math.MaxUint64 if none).
	Around(job string, at uint64) (rec StoredResult, found bool, next uint64, err error)
	// Release ends the view; it is idempotent.
	Release()
}

// errViewReleased is returned by a released view's methods.
var errViewReleased = errors.New("result view already released")

// MemResults is a ResultStore in memory, for tests, tools and the scheduling simulator. A view
// copies the records' index (not the payloads, which are never modified), so it costs
// O(records).
type MemResults struct {
	mu   sync.Mutex
	jobs map[string]map[uint64]StoredResult
}

// NewMemResults returns an empty in-memory result store, for tests and tools that need a job
// state without a data directory (the node's own store is on disk, internal/resultstore).
func NewMemResults() *MemResults { return &MemResults{jobs: map[string]map[uint64]StoredResult{}} }

// Put implements ResultStore; it keeps copies of the payloads.
func (m *MemResults) Put(recs []StoredResult) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		j := m.jobs[r.Job]
		if j == nil {
			j = map[uint64]StoredResult{}
			m.jobs[r.Job] = j
		}
		r.Payload = slices.Clone(r.Payload)
		j[r.Range.Start] = r
	}
	return nil
}

// Get implements ResultStore.
func (m *MemResults) Get(job string, start uint64) (StoredResult, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.jobs[job][start]
	return r, ok, nil
}

// Delete implements ResultStore.
func (m *MemResults) Delete(job string, start uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.jobs[job], start)
	return nil
}

// DeleteJob implements ResultStore.
func (m *MemResults) DeleteJob(job string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.jobs, job)
	return nil
}

// Clear implements ResultStore.
func (m *MemResults) Clear() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.jobs)
	return nil
}

// View implements ResultStore.
func (m *MemResults) View() (ResultView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &memView{jobs: make(map[string][]StoredResult, len(m.jobs))}
	for id, recs := range m.jobs {
		v.jobs[id] = slices.SortedFunc(maps.Values(recs), func(a, b StoredResult) int { return cmp.Compare(a.Range.Start, b.Range.Start) })
	}
	return v, nil
}

// Close implements ResultStore.
func (m *MemResults) Close() error { return nil }

type memView struct {
	jobs map[string][]StoredResult // each in order of range start
}

func (v *memView) Each(job string, fn func(StoredResult) error) error {
	if v.jobs == nil {
		return errViewReleased
	}
	for _, r := range v.jobs[job] {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (v *memView) Around(job string, at uint64) (StoredResult, bool, uint64, error) {
	if v.jobs == nil {
		return StoredResult{}, false, 0, errViewReleased
	}
	recs := v.jobs[job]
	// i is the first record starting after at.
	i, _ := slices.BinarySearchFunc(recs, at+1, func(r StoredResult, t uint64) int { return cmp.Compare(r.Range.Start, t) })
	if at == math.MaxUint64 {
		i = len(recs)
	}
	next := uint64(math.MaxUint64)
	if i < len(recs) {
		next = recs[i].Range.Start
	}
	if i == 0 {
		return StoredResult{}, false, next, nil
	}
	return recs[i-1], true, next, nil
}

func (v *memView) Release() { v.jobs = nil }

// putBuffer is the job state's ResultStore. While the commands of one raft entry are applied
// together (JobStore.ApplyBatch) their Puts wait, and flush stores them all in one write
// transaction of the store instead of one each; any other call stores them first, so that it
// sees what the commands before it stored. Outside an entry it passes every call through. It is
// used with the job state's lock held, as a ResultStore is: for writing, and for reading only
// while nothing waits (reads never see waiting records).
type putBuffer struct {
	ResultStore
	on   bool
	recs []StoredResult
	err  error // the first failed store, kept until flush reports it
}

// Put implements ResultStore.
func (b *putBuffer) Put(recs []StoredResult) error {
	if !b.on {
		return b.ResultStore.Put(recs)
	}
	b.recs = append(b.recs, recs...)
	return nil
}

// store writes the waiting records; an error stays for flush to report (the entry fails as a
// whole, see JobStore.ApplyBatch).
func (b *putBuffer) store() error {
	if len(b.recs) > 0 && b.err == nil {
		b.err = b.ResultStore.Put(b.recs)
		clear(b.recs) // the payloads alias the raft entry
		b.recs = b.recs[:0]
	}
	return b.err
}

// flush stores the waiting records and ends the entry, returning the first error since it began.
func (b *putBuffer) flush() error {
	err := b.store()
	b.discard()
	return err
}

// discard drops the waiting records and ends the entry (it failed).
func (b *putBuffer) discard() {
	clear(b.recs)
	b.on, b.recs, b.err = false, b.recs[:0], nil
}

// Get implements ResultStore.
func (b *putBuffer) Get(job string, start uint64) (StoredResult, bool, error) {
	if err := b.store(); err != nil {
		return StoredResult{}, false, err
	}
	return b.ResultStore.Get(job, start)
}

// Delete implements ResultStore.
func (b *putBuffer) Delete(job string, start uint64) error {
	if err := b.store(); err != nil {
		return err
	}
	return b.ResultStore.Delete(job, start)
}

// DeleteJob implements ResultStore.
func (b *putBuffer) DeleteJob(job string) error {
	if err := b.store(); err != nil {
		return err
	}
	return b.ResultStore.DeleteJob(job)
}

// Clear implements ResultStore.
func (b *putBuffer) Clear() error {
	if err := b.store(); err != nil {
		return err
	}
	return b.ResultStore.Clear()
}

// View implements ResultStore.
func (b *putBuffer) View() (ResultView, error) {
	if err := b.store(); err != nil {
		return nil, err
	}
	return b.ResultStore.View()
}
