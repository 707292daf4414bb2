package consensus

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/internal/boltfile"
)

// TestDamagedRaftDBIsAnError: a raft.db whose freelist page is damaged (bbolt panics on it at
// open) gives an error naming the file and what to do, not a crash.
func TestDamagedRaftDBIsAnError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "raft")
	log := slog.New(slog.DiscardHandler)
	st, err := openStores(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.logs.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, raftDBFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Each meta page (0 and 1) names the freelist page at byte 48; make those pages leaves.
	ps := int(binary.LittleEndian.Uint32(b[16+8:])) // the meta's page size
	for _, meta := range []int{0, ps} {
		id := int(binary.LittleEndian.Uint64(b[meta+48:]))
		binary.LittleEndian.PutUint16(b[id*ps+8:], 0x02)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = openStores(dir, log)
	var de *boltfile.DamagedError
	if !errors.As(err, &de) {
		t.Fatalf("open of a damaged raft.db: %v", err)
	}
	for _, want := range []string{path, "damaged", "mv " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}
