package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hydra-compute/hydra/internal/atomicfile"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// ErrCorruptIdentity is wrapped by LoadOrCreateIdentity when the key file
// exists but does not hold a usable key. The file is left as it is: a new key
// would give the node a new peer ID, and raft would then see a stranger where
// a member used to be, so a human must decide (restore a backup, or delete
// the file to start this node afresh).
var ErrCorruptIdentity = errors.New("corrupt identity key file")

// identityFileMode and identityDirMode are the permissions of the key file
// and of the directory created for it: the key is the node's identity in
// the cluster, so nobody but the owner may read it.
const (
	identityFileMode fs.FileMode = 0o600
	identityDirMode  fs.FileMode = 0o700
)

// LoadOrCreateIdentity returns the node's private key stored at path,
// creating a new Ed25519 key there (file 0600, missing directories 0700) if
// the file does not exist. A restarted node must keep its peer ID, because
// the peer ID is its raft server ID (docs/design.md §5): this is why a key file
// that exists but cannot be read or decoded is an error (wrapping
// ErrCorruptIdentity when it is undecodable) and is never overwritten.
//
// A new key is written to a temporary file in the same directory and linked
// into place, so a crash never leaves a half-written key behind, and two
// processes racing to create it end up with one key (the loser of the race
// reads and returns the winner's).
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	if path == "" {
		return nil, errors.New("identity: empty key path")
	}
	key, err := readIdentity(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return createIdentity(path)
}

// readIdentity loads and decodes the key at path.
func readIdentity(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: read %s: %w", path, err)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err == nil {
		err = checkKeyPair(key)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w: %v (move it away to create a new identity, which gives this node a new peer ID)", path, ErrCorruptIdentity, err)
	}
	return key, nil
}

// checkKeyPair signs a message with key and verifies it with key's public
// half. An Ed25519 key is stored as its seed followed by its public key, and
// libp2p decodes the two as they are: a flipped bit in either half decodes
// fine, into a key whose peer ID (from the public half) is no longer this
// node's, or whose signatures no peer accepts. The node would then start as
// a stranger to its cluster, or fail every handshake with a remote error
// that says nothing of the file; a signature that does not verify says at
// once that the file is corrupt.
func checkKeyPair(key crypto.PrivKey) error {
	msg := []byte("hydra identity self-check")
	sig, err := key.Sign(msg)
	if err != nil {
		return fmt.Errorf("sign with the key: %w", err)
	}
	ok, err := key.GetPublic().Verify(msg, sig)
	if err != nil {
		return fmt.Errorf("verify with the public key: %w", err)
	}
	if !ok {
		return errors.New("the private key and the public key it holds do not match")
	}
	return nil
}

// createIdentity generates an Ed25519 key and stores it atomically at path.
func createIdentity(path string) (crypto.PrivKey, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, identityDirMode); err != nil {
		return nil, fmt.Errorf("identity: create directory %s: %w", dir, err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: encode key: %w", err)
	}
	// CommitNew links the key into place, and a link, unlike a rename, fails if path
	// appeared meanwhile: a concurrent creator's key then wins and is the one returned.
	f, err := atomicfile.Create(path, identityFileMode, ".identity-")
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return nil, fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := f.CommitNew(); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readIdentity(path)
		}
		return nil, fmt.Errorf("identity: %w", err)
	}
	return key, nil
}
