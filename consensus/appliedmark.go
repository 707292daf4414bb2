package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// The applied mark: the FSM's applied index, written after every entry it
// applies, without fsync.
//
// The stable store's record (appliedKey) is written at most every
// appliedEvery, with an fsync, so a node killed (SIGKILL, the OOM killer, a
// crash) up to a second after an entry served, at its restart, a state older
// than the one it had shown: a job it had listed was gone until a leader
// caught it up again, and a page open on it closed the job. The mark closes
// that window for everything short of the machine itself stopping: a write
// without fsync is in the page cache, which outlives the process. After a
// power cut the mark may be older than the record, or torn (its checksum
// then fails and it is ignored): either only means replaying less, which the
// record bounds from below. The log always holds what the mark names: the
// FSM applies only entries raft had made durable in this node's log.

// appliedMarkFile is the mark's file in DATA/raft.
const appliedMarkFile = "applied.mark"

// appliedMarkSize is the mark's length: the index (8 bytes, little-endian)
// and its CRC-32C (4 bytes).
const appliedMarkSize = 12

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appliedMark writes the applied index in place. Only raft's FSM goroutine
// calls write, and close comes after raft stopped, so it needs no lock.
type appliedMark struct {
	f    *os.File
	last uint64 // the index in the file
	log  *slog.Logger
	buf  [appliedMarkSize]byte
}

// openAppliedMark opens (creating) the mark file in dir.
func openAppliedMark(dir string, log *slog.Logger) (*appliedMark, error) {
	f, err := os.OpenFile(filepath.Join(dir, appliedMarkFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the applied mark: %w", err)
	}
	m := &appliedMark{f: f, log: log}
	m.last, _ = decodeAppliedMark(f)
	return m, nil
}

// write records index if it moved. A failed write turns the mark off (a
// warning says so): the stable store's record still bounds the replay.
func (m *appliedMark) write(index uint64) {
	if m == nil || m.f == nil || index == m.last {
		return
	}
	binary.LittleEndian.PutUint64(m.buf[:8], index)
	binary.LittleEndian.PutUint32(m.buf[8:], crc32.Checksum(m.buf[:8], castagnoli))
	if _, err := m.f.WriteAt(m.buf[:], 0); err != nil {
		m.log.Warn("applied mark: write failed; a restart after a crash replays up to the last second's record only", "err", err)
		_ = m.f.Close()
		m.f = nil
		return
	}
	m.last = index
}

// close closes the file; the mark stays on disk.
func (m *appliedMark) close() error {
	if m == nil || m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}

// readAppliedMark returns the index in dir's mark; 0 when there is none or
// it does not check out (a torn write, a foreign file).
func readAppliedMark(dir string) uint64 {
	f, err := os.Open(filepath.Join(dir, appliedMarkFile))
	if err != nil {
		return 0
	}
	defer f.Close()
	idx, _ := decodeAppliedMark(f)
	return idx
}

// errBadMark is what decodeAppliedMark says of a mark that does not check out.
var errBadMark = errors.New("applied mark: bad length or checksum")

// decodeAppliedMark reads a mark from r: exactly appliedMarkSize bytes whose
// checksum matches.
func decodeAppliedMark(r io.ReaderAt) (uint64, error) {
	var b [appliedMarkSize + 1]byte
	n, err := r.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("applied mark: %w", err)
	}
	if n != appliedMarkSize || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:12]) {
		return 0, errBadMark
	}
	return binary.LittleEndian.Uint64(b[:8]), nil
}
