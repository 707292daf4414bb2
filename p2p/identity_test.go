package p2p

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func mustID(t *testing.T, k crypto.PrivKey) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestIdentity_PersistsAcrossLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node")
	path := filepath.Join(dir, "identity.key")
	k1, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Type() != crypto.Ed25519 {
		t.Fatalf("key type %v, want Ed25519", k1.Type())
	}
	k2, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if mustID(t, k1) != mustID(t, k2) {
		t.Fatalf("reloaded identity differs: %s vs %s", mustID(t, k1), mustID(t, k2))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode %v, want 0600", got)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("key dir mode %v, want 0700", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestIdentity_CorruptFileIsAnErrorAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	garbage := []byte("this is not a protobuf-encoded private key")
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateIdentity(path)
	if !errors.Is(err, ErrCorruptIdentity) {
		t.Fatalf("err = %v, want ErrCorruptIdentity", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, garbage) {
		t.Fatal("corrupt key file was overwritten")
	}
	// An empty file (a crash of some other tool) is corrupt too.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateIdentity(path); !errors.Is(err, ErrCorruptIdentity) {
		t.Fatalf("empty file: err = %v, want ErrCorruptIdentity", err)
	}
}

func TestIdentity_UnreadableIsAnError(t *testing.T) {
	// A directory where the key should be: unreadable as a file, for root
	// too (file permissions do not stop root).
	path := filepath.Join(t.TempDir(), "identity.key")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateIdentity(path)
	if err == nil {
		t.Fatal("no error for a directory in place of the key")
	}
	if errors.Is(err, ErrCorruptIdentity) {
		t.Fatalf("unreadable reported as corrupt: %v", err)
	}
	if _, err := LoadOrCreateIdentity(""); err == nil {
		t.Fatal("no error for an empty path")
	}
}

func TestIdentity_ConcurrentCreateAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	const n = 8
	ids := make([]peer.ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := LoadOrCreateIdentity(path)
			errs[i] = err
			if err == nil {
				ids[i], errs[i] = peer.IDFromPrivateKey(k)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent creators got different identities: %s vs %s", ids[i], ids[0])
		}
	}
}

// TestIdentity_FlippedBitIsCorrupt flips one bit of a stored Ed25519 key,
// in its seed and in its public half: either decodes (libp2p checks only the
// length), the first into a key that signs what no peer verifies, the second
// into another peer ID. Both must be ErrCorruptIdentity, never a key the
// node starts with, and the file must stay as it is.
func TestIdentity_FlippedBitIsCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int // offset into the 64 key bytes: seed then public key
	}{{"seed", 5}, {"public half", 32 + 5}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.key")
			if _, err := LoadOrCreateIdentity(path); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) < 64 {
				t.Fatalf("key file of %d bytes, want a 64-byte key at its end", len(data))
			}
			data[len(data)-64+tc.at] ^= 0x10
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadOrCreateIdentity(path)
			if !errors.Is(err, ErrCorruptIdentity) {
				id := peer.ID("")
				if k != nil {
					id, _ = peer.IDFromPrivateKey(k)
				}
				t.Fatalf("err = %v (peer ID %s), want ErrCorruptIdentity", err, id)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, data) {
				t.Fatal("corrupt key file was overwritten")
			}
		})
	}
}
