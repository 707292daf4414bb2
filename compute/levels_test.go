package compute

import (
	"errors"
	"testing"
)

// TestOpLevelsCoverEveryOp: opLevels, the one table of op → level, holds every op this build
// encodes and decodes, no op above Level, and Level is reached (it is the highest op's).
func TestOpLevelsCoverEveryOp(t *testing.T) {
	top := 0
	for op, lv := range opLevels {
		if lv < 1 || lv > Level {
			t.Errorf("op %#02x at level %d, outside 1..%d", op, lv, Level)
		}
		top = max(top, lv)
		if _, err := DecodeCommand(op, nil); errors.Is(err, ErrUnknownOp) {
			t.Errorf("op %#02x has a level but decodes as unknown", op)
		}
	}
	if top != Level {
		t.Errorf("Level %d, but the highest op's level is %d", Level, top)
	}
	if LevelUnadvertised < 1 || LevelUnadvertised >= Level {
		t.Errorf("LevelUnadvertised %d: want 1..%d (below AuditWaive's)", LevelUnadvertised, Level-1)
	}
	if OpLevel(OpAuditWaive) != 2 || OpLevel(OpAuditWaive) <= LevelUnadvertised {
		t.Errorf("AuditWaive at level %d: builds before levels do not all know it", OpLevel(OpAuditWaive))
	}
	cmds := append(sampleCommands(), AuditWaive{Node: "n1", Time: t0}, TrustReset{Node: "n1"}, AuditPolicy{})
	for _, c := range cmds {
		op, _, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if OpLevel(op) == 0 {
			t.Errorf("%T (op %#02x) has no level in opLevels", c, op)
		}
	}
}

// TestUnknownOpStopsInsteadOfDiverging: a committed command whose op this build does not know
// (a newer build's) is a local failure, so consensus stops the node rather than going on
// without it, whatever its payload; applied alone or in a batch, before any command of the
// entry changes the state. A known op with a bad payload keeps its handling: refused, alike on
// every replica, not a local failure.
func TestUnknownOpStopsInsteadOfDiverging(t *testing.T) {
	s := newTestState(t)
	for _, p := range [][]byte{nil, {1}, {9, 9, 9}} {
		res := s.Apply(0x55, p, 1)
		err, _ := res.(error)
		lf, ok := err.(interface{ LocalFailure() bool })
		if !ok || !lf.LocalFailure() || !errors.Is(err, ErrUnknownOp) {
			t.Fatalf("unknown op 0x55 with payload %x: %v, want a local failure", p, res)
		}
		if uo, ok := err.(interface{ UnknownOp() byte }); !ok || uo.UnknownOp() != 0x55 {
			t.Fatalf("unknown op error %v does not name its op", err)
		}
	}
	res := s.Apply(OpSubmit, []byte{1, 200}, 1)
	if err, _ := res.(error); err == nil || errors.Is(err, ErrUnknownOp) {
		t.Fatalf("a known op with a bad payload: %v, want a plain refusal", res)
	}
	if _, ok := res.(interface{ LocalFailure() bool }); ok {
		t.Fatalf("a known op with a bad payload is a local failure: %v", res)
	}

	op, p, err := EncodeCommand(Submit{ID: "a", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1000, Seed: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	before := stateDigest(t, s.JobStore)
	out, err := s.ApplyBatch([]byte{op, 0x55}, [][]byte{p, {1}}, 2)
	var uo *UnknownOpError
	if out != nil || !errors.As(err, &uo) || uo.Op != 0x55 || !uo.LocalFailure() {
		t.Fatalf("a batch with an unknown op: %v, %v; want the entry failed as a local failure", out, err)
	}
	if after := stateDigest(t, s.JobStore); after != before {
		t.Fatalf("the failed entry changed the state:\nbefore %s\nafter  %s", before, after)
	}
}
