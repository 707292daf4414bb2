package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

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

// Test_HCLogger_JSONPrintsWhatTextPrints: raft logs "entering follower state" with the *Raft
// itself ("follower", r, a fmt.Stringer) and its peers as raft.Server structs; with
// --log-format json they printed as "{}" and as their raw fields, not as in the text format.
func Test_HCLogger_JSONPrintsWhatTextPrints(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewJSONHandler(&buf, nil)), "raft")
	l.Info("entering follower state", "follower", stringer{"Node at a [Follower]"},
		"peer", raft.Server{Suffrage: raft.Voter, ID: "b", Address: "b"}, "error", errors.New("boom"), "n", 3,
		"at", time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC), "took", 1500*time.Millisecond)
	out := buf.String()
	for _, want := range []string{
		`"follower":"Node at a [Follower]"`,
		`"peer":"{Suffrage:Voter ID:b Address:b}"`,
		`"error":"boom"`,
		`"n":3`,
		`"at":"2026-12-07T01:02:03Z"`,
		`"took":1500000000`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("JSON log line %s lacks %s", out, want)
		}
	}
}

// stringer stands for a value that prints itself, with no exported fields (raft's *Raft).
type stringer struct{ s string }

func (s stringer) String() string { return s.s }

// Test_HCLogger_CancelledIsNotAnError: autopilot logs "Error when computing next state" with
// context.Canceled at ERROR each time the node stops leading, and "failed to demote raft peer"
// then "Failed to reconcile…" (the cause wrapped with %v, its chain lost) when leadership ends
// under one of its changes; that is routine and logs at DEBUG, while the same messages with
// any other error stay ERRORs.
func Test_HCLogger_CancelledIsNotAnError(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "autopilot")
	routine := []error{
		fmt.Errorf("stats: %w", context.Canceled),
		fmt.Errorf("autopilot: demote X: %w", raft.ErrLeadershipLost),
		fmt.Errorf("failed demoting server X: %v", fmt.Errorf("autopilot: demote X: %w", raft.ErrLeadershipLost)),
		fmt.Errorf("failed promoting server X: %v", raft.ErrNotLeader),
		raft.ErrRaftShutdown,
	}
	faults := []error{
		errors.New("boom"),
		fmt.Errorf("failed demoting server X: %v", errors.New("its key is revoked")),
		errors.New("leadership lost while committing log, and then some"),
	}
	for _, err := range append(append([]error{}, routine...), faults...) {
		l.Error("Error when computing next state", "error", err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(routine)+len(faults) {
		t.Fatalf("log:\n%s\nwant %d lines", buf.String(), len(routine)+len(faults))
	}
	for i, line := range lines {
		want := "level=DEBUG"
		if i >= len(routine) {
			want = "level=ERROR"
		}
		if !strings.Contains(line, want) {
			t.Errorf("line %d: %s\nwant %s", i, line, want)
		}
	}
}
