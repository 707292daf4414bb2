package consensus

import (
	"errors"
	"fmt"
	"io"
	"testing"
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
