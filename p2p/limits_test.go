package p2p

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/protocol"
)

// TestLimits_EveryDocumentedProtocolHasExplicitLimits: docs/design.md §6 and
// this package's doc say every Hydra protocol has explicit resource-manager
// limits, and docs/internals.md's protocol table lists them. A protocol
// added to the table but not to hydraProtocolLimits falls back to rcmgr's
// defaults, far wider per peer (/hydra/cluster/readindex/1.0.0 did: each of
// its asks costs the leader a round of heartbeats).
func TestLimits_EveryDocumentedProtocolHasExplicitLimits(t *testing.T) {
	doc, err := os.ReadFile("../docs/internals.md")
	if err != nil {
		t.Fatal(err)
	}
	// The table's rows: | `/hydra/...` | owner | what |
	row := regexp.MustCompile("(?m)^\\| `(/hydra/[^`]+)` \\|")
	rows := row.FindAllSubmatch(doc, -1)
	if len(rows) < 5 {
		t.Fatalf("found %d protocols in docs/internals.md's table; has its layout changed?", len(rows))
	}
	for _, m := range rows {
		id := protocol.ID(m[1])
		if !slices.ContainsFunc(hydraProtocolLimits, func(l protoLimit) bool { return l.id == id }) {
			t.Errorf("%s is in docs/internals.md's protocol table but has no explicit limits (hydraProtocolLimits)", id)
		}
	}
}
