//go:build unix

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Three node processes started together; a job is submitted as soon as
// /api/v1/status lists three nodes and a leader, and the leader is
// SIGKILLed about a second later. The others must elect a new leader and
// finish the job: votes are given as nodes join (never one voter and two
// non-voters that cannot elect anybody).
func TestSystem_LeaderKilledRightAfterThreeAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	base := t.TempDir()
	var ps []*proc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range ps {
				t.Logf("--- log of %s ---\n%s", p.name, p.dumpLog())
			}
		}
	})
	// Identities first, so every node can be told the founder's address
	// and all three start at once.
	ids := make([]string, 3)
	for i := range ids {
		dir := filepath.Join(base, fmt.Sprintf("n%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		key, err := p2p.LoadOrCreateIdentity(filepath.Join(dir, "identity.key"))
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id.String()
	}
	ports := []int{freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)}
	for i := range 3 {
		var args []string
		for j := range 3 {
			if j != i {
				args = append(args, "--join", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", ports[j], ids[j]))
			}
		}
		p := startProc(t, fmt.Sprintf("n%d", i), filepath.Join(base, fmt.Sprintf("n%d", i)), ports[i], freeTCPPort(t), args...)
		p.id = ids[i]
		ps = append(ps, p)
	}

	// As a user would: poll every node's status until one lists three
	// nodes and a leader, then submit at once.
	var via *proc
	var leaderID string
	waitFor(t, 60*time.Second, "a status listing 3 nodes and a leader", func() error {
		for _, p := range ps {
			st, err := p.status()
			if err == nil && st.Leader != "" && len(st.Nodes) == 3 {
				via, leaderID = p, st.Leader
				return nil
			}
		}
		return errors.New("not yet")
	})
	agreed := time.Now()
	var token string
	waitFor(t, 10*time.Second, "API token", func() error {
		for _, p := range ps {
			if _, tok, err := ReadLocal(p.dir); err == nil && tok != "" {
				token = tok
				return nil
			}
		}
		return errors.New("no token yet")
	})
	const samples, seed = 300_000_000, 5
	id := submitJob(t, via, token, map[string]any{"kind": "pi", "samples": samples, "seed": seed})

	var leader *proc
	for _, p := range ps {
		if p.id == leaderID {
			leader = p
		}
	}
	if leader == nil {
		t.Fatalf("leader %s is none of the nodes", leaderID)
	}
	if d := time.Until(agreed.Add(time.Second)); d > 0 {
		time.Sleep(d) // the scenario: a kill about 1 s after the three agree (not synchronisation)
	}
	var before uint64
	for _, p := range alive(ps, leader) {
		if j, err := jobOn(p, id); err == nil {
			if j.State == compute.StateDone {
				t.Fatalf("job done before the kill: make it bigger")
			}
			before = max(before, j.DoneUnits)
		}
	}
	killed := time.Now()
	leader.kill()
	t.Logf("leader %s killed %.2fs after three nodes agreed", leader.name, killed.Sub(agreed).Seconds())

	survivors := alive(ps)
	waitFor(t, 60*time.Second, "progress after the kill", func() error {
		for _, p := range survivors {
			if j, err := jobOn(p, id); err == nil && j.DoneUnits > before {
				return nil
			}
		}
		return errors.New("no progress")
	})
	t.Logf("job went on %.2fs after the leader was killed", time.Since(killed).Seconds())
	waitDone(t, survivors, id, 240*time.Second)
	checkPiExact(t, survivors, id, seed, samples)
}
