// Package resultstore keeps a node's chunk result payloads on disk, in a bbolt file: the
// compute.ResultStore the node gives its job state, so that compute itself stays pure (no
// files, no bbolt). One bucket per job; a key is a range start (8 bytes, big-endian, so a
// bucket iterates in range order), a value the range end (8 bytes) then the payload.
//
// It imports compute (for the interface it implements) and internal/boltfile, nothing else of
// Hydra's.
package resultstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/boltfile"
)

// Bolt is a compute.ResultStore in a bbolt file.
type Bolt struct {
	db *bolt.DB
}

var _ compute.ResultStore = (*Bolt)(nil)

// Open creates the store at path. Any file already there is removed first: after a restart
// raft rebuilds the job state by Restore from its latest snapshot and replay of the log after
// it, so an old store would only double what replay writes. The file is not fsynced for the
// same reason (the raft log is the durable copy). A damaged file that cannot be removed comes
// back as a *boltfile.DamagedError.
func Open(path string) (*Bolt, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("result store: remove old store %s: %w", path, err)
	}
	remedy := fmt.Sprintf("remove %s (it is rebuilt from the raft log) and start the node again", path)
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true}, remedy)
	if err != nil {
		return nil, fmt.Errorf("result store: open %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

func key(start uint64) []byte { return binary.BigEndian.AppendUint64(nil, start) }

// decode checks a stored record of job and makes a StoredResult of it; the payload aliases v.
func decode(job string, k, v []byte) (compute.StoredResult, error) {
	if len(k) != 8 || len(v) < 8 {
		return compute.StoredResult{}, fmt.Errorf("job %s: corrupt record", job)
	}
	r := compute.Range{Start: binary.BigEndian.Uint64(k), End: binary.BigEndian.Uint64(v)}
	return compute.StoredResult{Chunk: compute.Chunk{Job: job, Range: r}, Payload: v[8:]}, nil
}

// Put implements compute.ResultStore, in one transaction.
func (b *Bolt) Put(recs []compute.StoredResult) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		for _, r := range recs {
			bk, err := tx.CreateBucketIfNotExists([]byte(r.Job))
			if err != nil {
				return fmt.Errorf("job %s: %w", r.Job, err)
			}
			v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(r.Payload)), r.Range.End)
			if err := bk.Put(key(r.Range.Start), append(v, r.Payload...)); err != nil {
				return fmt.Errorf("job %s %v: %w", r.Job, r.Range, err)
			}
		}
		return nil
	})
}

// Get implements compute.ResultStore; the payload is a copy.
func (b *Bolt) Get(job string, start uint64) (rec compute.StoredResult, ok bool, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(job))
		if bk == nil {
			return nil
		}
		v := bk.Get(key(start))
		if v == nil {
			return nil
		}
		if rec, err = decode(job, key(start), v); err != nil {
			return err
		}
		rec.Payload, ok = append([]byte(nil), rec.Payload...), true
		return nil
	})
	return rec, ok, err
}

// Delete implements compute.ResultStore.
func (b *Bolt) Delete(job string, start uint64) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if bk := tx.Bucket([]byte(job)); bk != nil {
			return bk.Delete(key(start))
		}
		return nil
	})
}

// DeleteJob implements compute.ResultStore.
func (b *Bolt) DeleteJob(job string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(job)) == nil {
			return nil
		}
		return tx.DeleteBucket([]byte(job))
	})
}

// Clear implements compute.ResultStore.
func (b *Bolt) Clear() error {
	return b.db.Update(func(tx *bolt.Tx) error {
		var names [][]byte
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, append([]byte(nil), name...))
			return nil
		}); err != nil {
			return err
		}
		for _, n := range names {
			if err := tx.DeleteBucket(n); err != nil {
				return err
			}
		}
		return nil
	})
}

// View implements compute.ResultStore: a bbolt read transaction. While it is open the file
// keeps the pages it reads, and a write that must grow the file's memory map waits for it.
func (b *Bolt) View() (compute.ResultView, error) {
	tx, err := b.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &view{tx: tx}, nil
}

// Close implements compute.ResultStore.
func (b *Bolt) Close() error { return b.db.Close() }

type view struct {
	tx *bolt.Tx
}

var errReleased = errors.New("result view already released")

func (v *view) Each(job string, fn func(compute.StoredResult) error) error {
	if v.tx == nil {
		return errReleased
	}
	bk := v.tx.Bucket([]byte(job))
	if bk == nil {
		return nil
	}
	return bk.ForEach(func(k, val []byte) error {
		rec, err := decode(job, k, val)
		if err != nil {
			return err
		}
		return fn(rec)
	})
}

func (v *view) Around(job string, at uint64) (compute.StoredResult, bool, uint64, error) {
	if v.tx == nil {
		return compute.StoredResult{}, false, 0, errReleased
	}
	next := uint64(math.MaxUint64)
	bk := v.tx.Bucket([]byte(job))
	if bk == nil {
		return compute.StoredResult{}, false, next, nil
	}
	c := bk.Cursor()
	k, val := c.Seek(key(at))
	switch {
	case k == nil: // every record starts before at (or there is none)
		k, val = c.Last()
	case len(k) == 8 && binary.BigEndian.Uint64(k) > at:
		next = binary.BigEndian.Uint64(k)
		k, val = c.Prev()
	default: // a record starts at at
		if nk, _ := c.Next(); len(nk) == 8 {
			next = binary.BigEndian.Uint64(nk)
		}
	}
	if k == nil {
		return compute.StoredResult{}, false, next, nil
	}
	rec, err := decode(job, k, val)
	if err != nil {
		return compute.StoredResult{}, false, next, err
	}
	return rec, true, next, nil
}

func (v *view) Release() {
	if v.tx != nil {
		_ = v.tx.Rollback()
		v.tx = nil
	}
}
