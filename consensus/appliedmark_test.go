package consensus

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// The mark reads back what was written last, and a mark that does not check out (torn, too
// long, a flipped bit, absent) reads as 0: the replay then goes by the stable store's record.
func TestAppliedMark(t *testing.T) {
	dir := t.TempDir()
	if got := readAppliedMark(dir); got != 0 {
		t.Fatalf("no mark: read %d, want 0", got)
	}
	m, err := openAppliedMark(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m.write(41)
	m.write(42)
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	if got := readAppliedMark(dir); got != 42 {
		t.Fatalf("read %d, want 42", got)
	}
	m, err = openAppliedMark(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if m.last != 42 {
		t.Fatalf("reopened mark holds %d, want 42", m.last)
	}
	m.close()
	path := filepath.Join(dir, appliedMarkFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[3] ^= 1
	for name, b := range map[string][]byte{"torn": good[:7], "longer": append(bytes.Clone(good), 0), "flipped": flipped, "empty": nil} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := readAppliedMark(dir); got != 0 {
			t.Errorf("%s mark: read %d, want 0", name, got)
		}
	}
}

// FuzzDecodeAppliedMark: any file content decodes without a panic, and only a 12-byte mark
// whose checksum matches is accepted, with the index it holds.
func FuzzDecodeAppliedMark(f *testing.F) {
	var good [appliedMarkSize]byte
	binary.LittleEndian.PutUint64(good[:8], 1234)
	binary.LittleEndian.PutUint32(good[8:], crc32.Checksum(good[:8], castagnoli))
	f.Add(good[:])
	f.Add([]byte{})
	f.Add(good[:11])
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := decodeAppliedMark(bytes.NewReader(b))
		valid := len(b) == appliedMarkSize && crc32.Checksum(b[:8], castagnoli) == binary.LittleEndian.Uint32(b[8:])
		if (err == nil) != valid {
			t.Fatalf("%x: err %v, valid %v", b, err, valid)
		}
		if valid && idx != binary.LittleEndian.Uint64(b[:8]) {
			t.Fatalf("%x: index %d", b, idx)
		}
	})
}
