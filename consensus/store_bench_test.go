package consensus

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// BenchmarkLogAppend: one raft log append (what the leader, and each follower, does per entry
// before it may count it) of one entry of 1 KiB, durable when it returns, to the write-ahead
// log and, as before it, to raft.db: this is the disk's share of a commit.
//
//	go test -run '^$' -bench LogAppend -benchtime 2000x ./consensus/
func BenchmarkLogAppend(b *testing.B) {
	stores := map[string]func(b *testing.B, dir string) raft.LogStore{
		"wal": func(b *testing.B, dir string) raft.LogStore {
			w, err := openWAL(filepath.Join(dir, walDir), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { w.Close() })
			return w
		},
		"raft.db": func(b *testing.B, dir string) raft.LogStore {
			s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBFile)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
	for _, name := range []string{"wal", "raft.db"} {
		b.Run(name, func(b *testing.B) {
			s := stores[name](b, b.TempDir())
			data := bytes.Repeat([]byte{0x5a}, 1024)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := range b.N {
				if err := s.StoreLog(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
