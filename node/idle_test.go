package node

import (
	"runtime"
	"testing"
)

// TestIdleProcs: a process whose nodes are all idle runs on one P and gets its setting back
// when one of them has work or stops; a process that runs on one P anyway is left alone.
func TestIdleProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	a, b := &Node{}, &Node{}
	p := &idleProcs{busy: 3, nodes: map[*Node]bool{}}
	runtime.GOMAXPROCS(3)
	p.set(a, true)
	p.set(b, false)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Fatalf("one node busy: GOMAXPROCS %d, want 3", got)
	}
	p.set(b, true)
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("all idle: GOMAXPROCS %d, want 1", got)
	}
	p.set(a, false)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Fatalf("busy again: GOMAXPROCS %d, want 3", got)
	}
	p.set(a, true)
	p.forget(b)
	p.forget(a)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Fatalf("nodes stopped: GOMAXPROCS %d, want 3", got)
	}
	single := &idleProcs{busy: 1, nodes: map[*Node]bool{}}
	runtime.GOMAXPROCS(1)
	single.set(a, true)
	single.set(a, false)
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("a one-P process: GOMAXPROCS %d, want 1", got)
	}
}
