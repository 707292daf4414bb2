package consensus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Test_HCLogger_FormatsHclogValues: raft logs its configuration as
// hclog.Fmt("%+v", servers); the node's log must show the servers, not the
// format string and its raw arguments ("[%+v [...]]").
func Test_HCLogger_FormatsHclogValues(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	servers := []raft.Server{{Suffrage: raft.Voter, ID: "a", Address: "a"}}
	l.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", servers),
		"hex", hclog.Hex(255), "quote", hclog.Quote("x y"))
	out := buf.String()
	for _, want := range []string{
		`servers="[{Suffrage:Voter ID:a Address:a}]"`,
		"hex=0xff",
		`quote="\"x y\""`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %s", out, want)
		}
	}
	if strings.Contains(out, "%+v") {
		t.Errorf("log line %q carries the raw format string", out)
	}
}
