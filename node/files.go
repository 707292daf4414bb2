package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hydra-compute/hydra/internal/atomicfile"
)

// Files a node keeps in its data directory for the client commands on the
// same machine (hydra status, submit, …): where its API is and the token
// that authorises writes.
const (
	TokenFile  = "api-token"
	APIURLFile = "api-url"
)

// writeFileAtomic replaces path with data (mode perm) so that a reader never sees a
// half-written file, and a power cut leaves the old file or the new one, never an empty one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm, "."+filepath.Base(path)+"-")
}

func writeAPIURL(dir, url string) error {
	return writeFileAtomic(filepath.Join(dir, APIURLFile), []byte(url+"\n"), 0o644)
}

func writeToken(dir, token string) error {
	return writeFileAtomic(filepath.Join(dir, TokenFile), []byte(token+"\n"), 0o600)
}

// ReadLocal reads what a node wrote into dir for local clients: its API URL
// and (if readable) the API token. A missing token is not an error: reads
// need none.
func ReadLocal(dir string) (apiURL, token string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, APIURLFile))
	if err != nil {
		return "", "", fmt.Errorf("no running node found in %s (start one with 'hydra node', or pass --api): %w", dir, err)
	}
	apiURL = strings.TrimSpace(string(b))
	if t, err := os.ReadFile(filepath.Join(dir, TokenFile)); err == nil {
		token = strings.TrimSpace(string(t))
	}
	return apiURL, token, nil
}

// loadNodeToken returns the node's own admin credential: the one in
// DATA/api-token from an earlier run (a cluster created before credentials
// were per node keeps its token there), or a new random one that is kept
// in memory and written only once the cluster has admitted the node.
func loadNodeToken(dir string) (string, error) {
	if dir == "" {
		return randomSecret(), nil
	}
	b, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", TokenFile, err)
	}
	return randomSecret(), nil
}

// randomSecret is 32 random bytes in hex: API credentials.
func randomSecret() string {
	var r [32]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(r[:])
}
