package consensus

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// A committed entry whose op this build does not know (a newer build proposed it) stops the
// FSM, as a full disk does, instead of being refused here while every newer replica applies it:
// an unknown App op in an entry of its own or in a batch (before any command of the batch is
// applied), and an unknown cluster op. OnFatal names the entry; nothing after it is applied. A
// known op with a bad payload is still refused alike everywhere, and the FSM goes on.
func Test_FSM_UnknownOpStops(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	submit := appLog(t, 2, compute.Submit{ID: "j", Time: t0, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000, Seed: 3}}})
	unknownApp, err := EncodeCommand(Command{Op: 0x55, Payload: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"app op":     unknownApp,
		"batch":      encodeBatch([][]byte{submit.Data, unknownApp}),
		"cluster op": {CommandVersion, 0x20, '{', '}'},
	} {
		t.Run(name, func(t *testing.T) {
			js := compute.NewJobStore(compute.NewMemResults())
			defer js.Close()
			fsm := NewFSM(js)
			fatal := make(chan *ApplyFailure, 1)
			fsm.onFatal = func(af *ApplyFailure) { fatal <- af }
			apply(fsm, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
			// A malformed known op: refused, and the FSM goes on.
			res := apply(fsm, 2, []byte{CommandVersion, byte(compute.OpSubmit), 1, 200})
			if _, isErr := res.(error); !isErr || fsm.Failure() != nil {
				t.Fatalf("a malformed submit: %v, stopped: %v; want refused, and the FSM going on", res, fsm.Failure())
			}
			res = apply(fsm, 3, data)
			af, ok := res.(*ApplyFailure)
			uo, isUnknown := errors.AsType[UnknownOp](res.(error))
			if !ok || af.Index != 3 || !isUnknown || fsm.Failure() != af {
				t.Fatalf("an unknown op: %T %v, want an *ApplyFailure at index 3 naming the op", res, res)
			}
			if want := map[bool]byte{true: 0x20, false: 0x55}[name == "cluster op"]; uo.UnknownOp() != want {
				t.Fatalf("failure names op %#02x, want %#02x", uo.UnknownOp(), want)
			}
			select {
			case got := <-fatal:
				if got != af {
					t.Fatalf("OnFatal got %v", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("OnFatal was not called")
			}
			if len(js.Jobs()) != 0 {
				t.Fatal("a command of the failed entry was applied")
			}
			if res := apply(fsm, 4, submit.Data); !errors.Is(res.(error), ErrApplyStopped) {
				t.Fatalf("apply after the failure: %v", res)
			}
			if _, err := fsm.Snapshot(); !errors.Is(err, ErrCommandOp) && !errors.Is(err, compute.ErrUnknownOp) {
				t.Fatalf("a snapshot after the failure: %v, want it refused (it would skip entry 3)", err)
			}
		})
	}
}

// gateOp needs level 2; unknownOp is unknown to the builds of the test (level 0).
const (
	gateOp    = OpAppFirst + 5
	unknownOp = OpAppFirst + 6
)

func testOpLevel(op Op) int {
	switch op {
	case gateOp:
		return 2
	case unknownOp:
		return 0
	}
	return 1
}

// Test_MultiNode_OpGate: an App op is proposed only when every raft member registered a level
// that knows it. With one member of an older build (no level registered: counted as
// UnadvertisedLevel), a level-2 op is refused, on the leader, forwarded from a follower and in a
// group, with ErrOpUnsupported naming that member, while level-1 ops go on; the leader refuses
// it too when a follower without the gate forwards it, and refuses outright an op its own build
// does not know. Once that member restarted with the new build (a rolling upgrade), the op goes
// through.
func Test_MultiNode_OpGate(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "opgate", func(i int, c *Config) {
		c.App = refusingApp{}
		c.OpLevel, c.UnadvertisedLevel = testOpLevel, 1
		c.Self.Level = 2
		switch i {
		case 1:
			c.Self.Level, c.Self.Version = 0, "old" // an older build: no level
		case 2:
			c.OpLevel = nil // a build without the gate: forwards anything
		}
	})
	leader := settled(t, nodes, 3, true)
	old, noGate := nodes[1], nodes[2]
	gated := Command{Op: gateOp, Payload: []byte("g")}
	for _, via := range []*testNode{nodes[0], old} {
		if via.cfg.OpLevel == nil {
			continue
		}
		_, err := via.r.Apply(ctxT(t, testDeadline), gated)
		if !errors.Is(err, ErrOpUnsupported) || !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), old.h.ID().String()) {
			t.Errorf("a level-2 op through %s with an older member: %v, want refused naming %s", via.name, err, old.name)
		}
		_, errs := via.r.ApplyGroup(ctxT(t, testDeadline), []Command{{Op: OpAppFirst + 3, Payload: []byte("a")}, gated})
		if errs[0] != nil || !errors.Is(errs[1], ErrOpUnsupported) {
			t.Errorf("the same in a group through %s: %v, want the level-1 op applied and the other refused", via.name, errs)
		}
	}
	if err := nodes[0].r.CheckOp(gateOp); !errors.Is(err, ErrOpUnsupported) {
		t.Errorf("CheckOp with an older member: %v", err)
	}
	if noGate != leader {
		for _, op := range []Op{gateOp, unknownOp} {
			if _, err := noGate.r.Apply(ctxT(t, testDeadline), Command{Op: op, Payload: []byte("f")}); !errors.Is(err, ErrOpUnsupported) {
				t.Errorf("op %s forwarded by a member without the gate: %v, want the leader's refusal", op, err)
			}
		}
	}
	if _, err := nodes[0].r.Apply(ctxT(t, testDeadline), Command{Op: unknownOp, Payload: []byte("u")}); !errors.Is(err, ErrOpUnsupported) {
		t.Errorf("an op this build does not know: %v", err)
	}

	// The older member is upgraded: it restarts with a build at level 2 and registers it.
	old.kill()
	old.cfg.Self.Level, old.cfg.Self.Version = 2, "new"
	old.restart([]*testNode{nodes[0], noGate})
	waitUntil(t, testDeadline, "the upgraded member's level registered everywhere", func() error {
		for _, n := range nodes {
			if m := n.r.State().Nodes[old.h.ID().String()]; m.Level != 2 {
				return fmt.Errorf("%s sees level %d", n.name, m.Level)
			}
		}
		return nil
	})
	waitAgreed(t, nodes)
	for _, via := range []*testNode{nodes[0], old} {
		if _, err := via.r.Apply(ctxT(t, testDeadline), gated); err != nil {
			t.Errorf("a level-2 op through %s once every member is at level 2: %v", via.name, err)
		}
	}
	if err := old.r.CheckOp(gateOp); err != nil {
		t.Errorf("CheckOp once every member is at level 2: %v", err)
	}
}

// NodeMeta's level is bounded: a registration outside 0..maxLevel is refused.
func Test_NodeMeta_LevelBounded(t *testing.T) {
	f := NewFSM(nil)
	apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
	for i, lv := range []int{-1, maxLevel + 1, math.MaxInt32} {
		res := apply(f, uint64(2+i), mustCmd(t, OpNodeRegister, NodeMeta{ID: "p", Level: lv}))
		if err, _ := res.(error); !errors.Is(err, ErrRejected) {
			t.Errorf("level %d registered: %v", lv, res)
		}
	}
	if res := apply(f, 9, mustCmd(t, OpNodeRegister, NodeMeta{ID: "p", Level: 2})); res != nil {
		t.Fatalf("level 2: %v", res)
	}
	if f.State().Nodes["p"].Level != 2 {
		t.Fatal("level not kept")
	}
}
