package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/internal/resultstore"
	"github.com/hydra-compute/hydra/p2p"
)

// recoverScratch is the result store Recover replays the log into (DATA/jobs.recover.db): as
// big as the cluster's results, and removed when Recover returns, or by the next node start if
// Recover was killed.
const recoverScratch = "jobs.recover.db"

// Recover rewrites the raft configuration of the stopped node in dataDir so
// that a cluster which lost a majority of its voters for good can come back
// (hydra recover). voters lists the surviving voters' peer IDs; empty means
// this node alone. Run it with the same list on every survivor, then start
// them. It returns this node's peer ID.
//
// Run as root on a data directory another user owns (sudo, the systemd unit's state directory),
// what it writes is given to that user afterwards, whether or not the recovery succeeded.
func Recover(dataDir string, voters []string) (_ string, err error) {
	if _, err := os.Stat(filepath.Join(dataDir, "raft")); err != nil {
		return "", configErr("--data %s: no raft state to recover: %v", dataDir, err)
	}
	unlock, err := lockDataDir(dataDir) // a running node's directory is left alone
	if err != nil {
		return "", err
	}
	defer unlock()
	defer func() {
		if oerr := giveToDirOwner(dataDir); oerr != nil {
			err = errors.Join(err, fmt.Errorf("recover %s: %w", dataDir, oerr))
		}
	}()
	key, err := p2p.LoadOrCreateIdentity(filepath.Join(dataDir, "identity.key"))
	if err != nil {
		return "", configErr("--data %s: identity: %v", dataDir, err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("identity: %w", err)
	}
	ids := voters
	if len(ids) == 0 {
		ids = []string{id.String()}
	}
	for _, v := range ids {
		if _, err := peer.Decode(v); err != nil {
			return "", configErr("--voters: %q is not a peer ID: %v", v, err)
		}
	}
	// raft replays the log into a fresh job state to write the recovered
	// snapshot: without one, the snapshot would hold no jobs.
	scratch := filepath.Join(dataDir, recoverScratch)
	results, err := resultstore.Open(scratch)
	if err != nil {
		return "", fmt.Errorf("recover %s: %w", dataDir, err)
	}
	jobs := compute.NewJobStore(results)
	defer os.Remove(scratch)
	defer jobs.Close()
	if err := consensus.RecoverWithApp(filepath.Join(dataDir, "raft"), ids, jobs); err != nil {
		return "", fmt.Errorf("recover %s: %w", dataDir, err)
	}
	return id.String(), nil
}
