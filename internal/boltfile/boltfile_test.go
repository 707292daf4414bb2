package boltfile

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// newFile makes a small bolt file with one bucket and returns its path and page size.
func newFile(t *testing.T) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	ps := db.Info().PageSize
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path, ps
}

// Offsets in a bolt meta page (bbolt's page and meta layout): the page header is 16 bytes
// (id u64, flags u16, count u16, overflow u32); the meta after it is magic, version,
// page size, flags (u32 each), the root bucket (16 bytes), then the freelist page id (u64).
const (
	flagsOff    = 8
	freelistOff = 16 + 16 + 16
)

// freelistPages returns the freelist page ids that the two meta pages name.
func freelistPages(t *testing.T, b []byte, ps int) []uint64 {
	t.Helper()
	return []uint64{
		binary.LittleEndian.Uint64(b[freelistOff:]),
		binary.LittleEndian.Uint64(b[ps+freelistOff:]),
	}
}

func TestDamagedFreelistIsAnError(t *testing.T) {
	path, ps := newFile(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range freelistPages(t, b, ps) {
		binary.LittleEndian.PutUint16(b[int(id)*ps+flagsOff:], 0x02) // a leaf page, not a freelist
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, 0o600, &bolt.Options{}, "remove it")
	var de *DamagedError
	if !errors.As(err, &de) || db != nil {
		t.Fatalf("open of a damaged freelist: %v, %v", db, err)
	}
	if de.Path != path || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove it") ||
		!strings.Contains(err.Error(), "freelist") {
		t.Fatalf("message %q does not name the file, the damage and the remedy", err)
	}
}

func TestFreelistPastTheEndIsAnError(t *testing.T) {
	path, ps := newFile(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Point both metas' freelist far past the file: reading it faults on the memory map.
	// The meta checksum covers the field, so it is recomputed the way bbolt does (FNV-64a of
	// the meta up to the checksum).
	for _, off := range []int{0, ps} {
		binary.LittleEndian.PutUint64(b[off+freelistOff:], 1<<30)
		fixChecksum(b[off+16:])
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, 0o600, &bolt.Options{}, "remove it")
	var de *DamagedError
	if !errors.As(err, &de) {
		t.Fatalf("open with a freelist past the end: %v", err)
	}
	if !strings.HasPrefix(de.Cause, "bbolt: ") { // the fault, not the checksum: the test's meta edit is right
		t.Fatalf("want the recovered fault, got %q", de.Cause)
	}
}

func TestBadMetaIsAnError(t *testing.T) {
	path, ps := newFile(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{0, ps} {
		b[off+16] ^= 0xff // the magic
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, 0o600, &bolt.Options{}, "remove it")
	var de *DamagedError
	if !errors.As(err, &de) {
		t.Fatalf("open with both metas invalid: %v", err)
	}
}

func TestHealthyFileOpens(t *testing.T) {
	path, _ := newFile(t)
	db, err := Open(path, 0o600, &bolt.Options{}, "remove it")
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := Guard(path, "", func() error { return os.ErrPermission }); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("other errors pass through: %v", err)
	}
}

// fixChecksum rewrites a meta's checksum: FNV-64a over the 56 bytes before it.
func fixChecksum(meta []byte) {
	const off = 56
	h := uint64(14695981039346656037)
	for _, c := range meta[:off] {
		h ^= uint64(c)
		h *= 1099511628211
	}
	binary.LittleEndian.PutUint64(meta[off:], h)
}
