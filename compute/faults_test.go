package compute

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestFaultsReplicated: the job state keeps the distinct nodes a job's module failed on, each
// once with its first message, bounded, through a snapshot; faults of other jobs are refused.
func TestFaultsReplicated(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: wasmSpec(100, ReduceSum)})
	st.mustApply(t, Submit{ID: "p", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10, Seed: 1}}})
	for _, f := range []Fault{
		{Job: "w", Node: "a", Msg: "items [0, 10): unreachable", Time: t0},
		{Job: "w", Node: "b", Msg: "items [10, 20): unreachable", Time: t0},
		{Job: "w", Node: "a", Msg: "items [20, 30): again", Time: t0}, // a is counted once
		{Job: "w", Node: "c", Msg: "bad \xff utf-8", Time: t0},
	} {
		st.mustApply(t, f)
	}
	j, _ := st.Job("w")
	if len(j.Faults) != 3 || j.Faults[0].Node != "a" || j.Faults[0].Msg != "items [0, 10): unreachable" ||
		j.Faults[2].Msg != "bad \uFFFD utf-8" {
		t.Fatalf("faults %+v", j.Faults)
	}
	for _, c := range []struct {
		f    Fault
		want string
	}{
		{Fault{Job: "p", Node: "a", Time: t0}, "no module"},
		{Fault{Job: "nope", Node: "a", Time: t0}, ErrNoSuchJob.Error()},
		{Fault{Job: "w", Time: t0}, "empty node"},
	} {
		if err, _ := st.ApplyCommand(c.f, 0).(error); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.f, err, c.want)
		}
	}
	for i := range 2 * MaxJobFaults {
		st.mustApply(t, Fault{Job: "w", Node: fmt.Sprint("n", i), Time: t0})
	}
	if j, _ := st.Job("w"); len(j.Faults) != MaxJobFaults {
		t.Fatalf("%d faults kept, want the bound %d", len(j.Faults), MaxJobFaults)
	}
	r := restoresTheSame(t, st)
	if j, _ := r.Job("w"); len(j.Faults) != MaxJobFaults || j.Faults[1].Node != "b" {
		t.Fatalf("restored faults %+v", j.Faults)
	}
	st.mustApply(t, Fail{Job: "w", Reason: "failed", Time: t0})
	if err, _ := st.ApplyCommand(Fault{Job: "w", Node: "z", Time: t0}, 0).(error); !errors.Is(err, ErrJobFinished) {
		t.Fatalf("fault of a failed job: %v", err)
	}
}

func TestValidFaults(t *testing.T) {
	w := wasmSpec(10, ReduceSum)
	many := make([]JobFault, MaxJobFaults+1)
	for i := range many {
		many[i].Node = fmt.Sprint(i)
	}
	for _, c := range []struct {
		spec JobSpec
		fs   []JobFault
		want string
	}{
		{w, []JobFault{{Node: "a"}, {Node: "b"}}, ""},
		{w, many, "at most"},
		{w, []JobFault{{Node: "a"}, {Node: "a"}}, "twice"},
		{w, []JobFault{{Node: ""}}, "node id"},
		{w, []JobFault{{Node: "a", Msg: strings.Repeat("x", maxStoredFaultMsg+1)}}, "message"},
		{JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1, Seed: 1}}, []JobFault{{Node: "a"}}, "pi job"},
	} {
		err := validFaults(c.spec, c.fs)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%d faults: %v, want %q", len(c.fs), err, c.want)
		}
	}
}

// TestFaultMessageMadeValidRestores: a fault's message of up to MaxFaultMsg bytes with invalid
// UTF-8 is kept made valid, up to twice as long; a snapshot holding it restores to the same
// state (it was refused for its length, and every replica that applied the fault was left
// with a state no node could restore).
func TestFaultMessageMadeValidRestores(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: wasmSpec(100, ReduceSum)})
	msg := strings.Repeat("\xffa", MaxFaultMsg/2)
	st.mustApply(t, Fault{Job: "w", Node: "a", Msg: msg, Time: t0})
	if j, _ := st.Job("w"); len(j.Faults) != 1 || j.Faults[0].Msg != strings.ToValidUTF8(msg, "\uFFFD") {
		t.Fatalf("faults %+v", j.Faults)
	}
	restoresTheSame(t, st)
}

// restoresTheSame checks that st's snapshot restores into a state equal to st's, and returns it.
func restoresTheSame(t *testing.T, st testState) testState {
	t.Helper()
	var snap bytes.Buffer
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := newTestState(t)
	if err := r.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if a, b := stateDigest(t, st.JobStore), stateDigest(t, r.JobStore); a != b {
		t.Fatalf("restored state differs:\n%s\n%s", a, b)
	}
	return r
}
