// Package streamflood is the attacker's half of the tests that check a node's stream
// handlers against hostile input: it opens streams on every protocol a node serves and
// announces gigabyte-long frames (and sends garbage), then checks that the heap of the
// process (which hosts the node under test) did not grow with what was announced. It
// lives here, not in a _test file, so that the consensus and node tests share one
// attacker (docs/security.md, "Bounded input").
package streamflood

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// MaxHeapGrowth is how much the heap may grow over a flood: far below the gigabytes the
// frames announce, above what the node legitimately allocates meanwhile.
const MaxHeapGrowth = 64 << 20

// Flood opens perProto streams from attacker to target on each protocol. Each stream
// announces a frame of 2³⁰ bytes (every stream when junk is 0, every other one otherwise)
// and then writes junk random bytes (or a lone "{" when junk is 0), closes its side, reads
// one byte and resets. A refused stream is fine. It fails t when the heap grew by more than
// MaxHeapGrowth across the flood: a handler that allocates what a length prefix announces
// before reading it is the bug this catches.
func Flood(t testing.TB, ctx context.Context, attacker host.Host, target peer.ID, protos []protocol.ID, perProto, junk int) {
	t.Helper()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	buf := make([]byte, max(junk, 1))
	for _, proto := range protos {
		for i := range perProto {
			s, err := attacker.NewStream(ctx, target, proto)
			if err != nil {
				continue // refused at once: fine
			}
			_ = s.SetDeadline(time.Now().Add(5 * time.Second))
			if junk == 0 || i%2 == 0 {
				var hdr [binary.MaxVarintLen64]byte
				_, _ = s.Write(hdr[:binary.PutUvarint(hdr[:], 1<<30)])
			}
			if junk == 0 {
				_, _ = s.Write([]byte("{"))
			} else {
				_, _ = rand.Read(buf)
				_, _ = s.Write(buf)
			}
			_ = s.CloseWrite()
			_, _ = bufio.NewReader(s).ReadByte()
			_ = s.Reset()
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if grown := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grown > MaxHeapGrowth {
		t.Fatalf("heap grew by %d MiB after %d streams of gigabyte length prefixes and garbage", grown>>20, perProto*len(protos))
	}
}
