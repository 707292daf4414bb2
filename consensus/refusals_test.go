package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// errGone stands for an App's refusal error that its proposers tell apart (compute.ErrNoSuchJob).
var errGone = errors.New("no such thing")

// refusingApp refuses op OpAppFirst with an error wrapping errGone, and op OpAppFirst+1 with
// one that only names it in its text; it accepts the others.
type refusingApp struct{}

func (refusingApp) Apply(op byte, payload []byte, index uint64) any {
	switch Op(op) {
	case OpAppFirst:
		return fmt.Errorf("cancel %s: %w", payload, errGone)
	case OpAppFirst + 1:
		return fmt.Errorf("cancel %q: the job's name is not allowed", errGone.Error())
	}
	return string(payload)
}

func (refusingApp) Snapshot(w io.Writer) error { return nil }
func (refusingApp) Restore(r io.Reader) error  { return nil }

// Test_MultiNode_RefusalsKeepTheirErrors: an App's refusal wrapping one of Config.Refusals is
// recognised by errors.Is, whether it was applied on the proposing node (the leader, alone or
// in a group commit) or forwarded from a follower, whose answer comes back over the network
// (before, the leader's wrapping dropped it, and a follower got text only: the API answered a
// cancel that lost a race 500 instead of 404). A refusal that only names such an error in its
// text is not taken for it, and the leader's own refusals (forbidden) are recognised as well.
func Test_MultiNode_RefusalsKeepTheirErrors(t *testing.T) {
	t.Parallel()
	adminOp := OpAppFirst + 2
	nodes := startCluster(t, 3, "refusals", func(_ int, c *Config) {
		c.App = refusingApp{}
		c.Refusals = []error{errGone}
		c.AdminOps = []Op{adminOp}
	})
	leader := waitAgreed(t, nodes)
	follower := otherThan(nodes, leader)
	gone := Command{Op: OpAppFirst, Payload: []byte("x")}
	named := Command{Op: OpAppFirst + 1, Payload: []byte("y")}
	for _, via := range []*testNode{leader, follower} {
		_, err := via.r.Apply(ctxT(t, testDeadline), gone)
		if !errors.Is(err, errGone) || !errors.Is(err, ErrRejected) || errors.Is(err, ErrForbidden) {
			t.Errorf("a refusal wrapping a registered error, through %s (leader %v): %v", via.name, via == leader, err)
		}
		_, err = via.r.Apply(ctxT(t, testDeadline), named)
		if errors.Is(err, errGone) || !errors.Is(err, ErrRejected) {
			t.Errorf("a refusal naming a registered error, through %s (leader %v): %v", via.name, via == leader, err)
		}
		_, errs := via.r.ApplyGroup(ctxT(t, testDeadline), []Command{gone, named})
		if !errors.Is(errs[0], errGone) || errors.Is(errs[1], errGone) || !errors.Is(errs[1], ErrRejected) {
			t.Errorf("the same in a group, through %s (leader %v): %v", via.name, via == leader, errs)
		}
	}
	// An admin op a member forwards without a credential: the leader refuses it.
	admin := Command{Op: adminOp, Payload: []byte("z")}
	if _, err := follower.r.Apply(ctxT(t, testDeadline), admin); !errors.Is(err, ErrForbidden) || !errors.Is(err, ErrRejected) || errors.Is(err, errGone) {
		t.Errorf("an admin op forwarded without a credential: %v, want forbidden", err)
	}
}

// TestAdminRefusalsKeepTheirKind: an admin refusal the leader makes is recognised by its kind
// (ErrInvalid: 400, ErrConflict: 409, ErrNoSuchNode: 404 in the API) on the leader and through a
// follower, with the same text. Before, a follower had ErrRejected alone from the leader's
// answer, and the API answered a forwarded ErrInvalid 409 where the leader answered 400. A join
// token entry the follower's own check would pass (a stale replica: here apply, which skips it)
// reaches the leader's check.
func TestAdminRefusalsKeepTheirKind(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "admin-refusals", nil)
	leader := settled(t, nodes, 3, true)
	follower := otherThan(nodes, leader)
	cid := leader.r.State().ClusterID
	now := time.Now().UTC()
	goodID, _, good := NewJoinToken(cid)
	good.Role, good.Created, good.Expires = RoleWorker, now, now.Add(time.Hour)
	cmd, _ := NewCommand(OpTokenAdd, TokenAdd{ID: goodID, Token: good})
	if _, err := leader.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatal(err)
	}
	badRole := good
	badRole.Role = RoleAdmin
	otherKey := good
	otherKey.Key = strings.Repeat("ab", 32)
	for _, c := range []struct {
		name string
		add  TokenAdd
		want error
	}{
		{"a role a token cannot have", TokenAdd{ID: "bad-role", Token: badRole}, ErrInvalid},
		{"an ID in use", TokenAdd{ID: goodID, Token: otherKey}, ErrConflict},
	} {
		cmd, _ := NewCommand(OpTokenAdd, c.add)
		_, onLeader := leader.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken)
		_, forwarded := follower.r.apply(ctxT(t, testDeadline), cmd, testAdminToken)
		for _, err := range []error{onLeader, forwarded} {
			if !errors.Is(err, c.want) || !errors.Is(err, ErrRejected) {
				t.Errorf("%s (leader's %v, forwarded %v): want %v", c.name, onLeader, forwarded, c.want)
			}
		}
		if onLeader == nil || forwarded == nil || onLeader.Error() != forwarded.Error() {
			t.Errorf("%s: the leader says %v, a follower %v", c.name, onLeader, forwarded)
		}
	}
}

// TestRefusalKindsCrossTheWire: each admin refusal kind the leader's answer carries is
// recognised by the follower that decodes it (refused, JSON, newRejection), and a leader of an
// older build, which sends no kinds, is not taken to mean one by a text that only contains its
// words.
func TestRefusalKindsCrossTheWire(t *testing.T) {
	r := &Raft{}
	known := r.refusalErrors()
	for _, kind := range []error{ErrInvalid, ErrConflict, ErrNoSuchNode} {
		resp := r.refused(kinded(kind, errors.New("refused for a reason")))
		b, err := json.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		var got applyResponse
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		rej := newRejection(got.Rejected, got.Kinds, known)
		if !errors.Is(rej, kind) || !errors.Is(rej, ErrRejected) || rej.Error() != "command rejected: refused for a reason" {
			t.Errorf("%v: a follower decodes %q %v", kind, rej.Error(), rej.is)
		}
		for _, other := range []error{ErrInvalid, ErrConflict, ErrNoSuchNode, ErrForbidden} {
			if other != kind && errors.Is(rej, other) {
				t.Errorf("%v: taken for %v too", kind, other)
			}
		}
		old := newRejection("command rejected: job \""+kind.Error()+"\" refused", nil, known)
		if errors.Is(old, kind) || !errors.Is(old, ErrRejected) {
			t.Errorf("an older leader's refusal naming %q: taken for it", kind)
		}
	}
}
