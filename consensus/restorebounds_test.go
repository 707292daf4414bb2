package consensus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/wire"
)

// snapshotOf is the snapshot Persist writes for the state js (JSON) and no App section.
func snapshotOf(js []byte) []byte {
	b := append([]byte(snapshotMagic), snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(js)))
	return append(append(b, js...), 0)
}

// Test_FSM_RestoreClampsSettings: a snapshot whose settings are outside today's bounds is
// restored with each one at its nearest bound (or its default when it has no meaning), and a
// warning names the setting, the value read and the value used; two replicas restoring it
// hold the same state.
func Test_FSM_RestoreClampsSettings(t *testing.T) {
	st := ClusterState{
		ClusterID: "c", Voters: 42, ChunkTarget: -time.Second, Admit: "everyone",
		Nodes:    map[string]NodeMeta{},
		Settings: &Settings{Retention: time.Second, DiskCap: 1 << 60, MaxJobs: -5, ReadAuth: true},
	}
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	data := snapshotOf(js)
	restore := func() (ClusterState, string) {
		var logs bytes.Buffer
		f := NewFSM(nil)
		f.log = slog.New(slog.NewTextHandler(&logs, nil))
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatalf("restore: %v", err)
		}
		return f.State(), logs.String()
	}
	got, logs := restore()
	want := Settings{Retention: MinRetention, DiskCap: MaxDiskCap, MaxJobs: DefaultSettings().MaxJobs, ReadAuth: true}
	if got.Settings == nil || *got.Settings != want {
		t.Fatalf("settings %+v, want %+v", got.Settings, want)
	}
	if got.Voters != maxVoters || got.ChunkTarget != 0 || got.Admit != AdmitApproval {
		t.Fatalf("voters %d, chunk target %v, admit %q", got.Voters, got.ChunkTarget, got.Admit)
	}
	if err := got.Settings.Validate(); err != nil {
		t.Fatalf("restored settings out of bounds: %v", err)
	}
	for _, w := range []string{
		"setting=retention read=1s used=1m0s",
		"setting=disk-cap read=1152921504606846976 used=1125899906842624",
		"setting=max-jobs read=-5 used=20000",
		"setting=voters read=42 used=9",
		"setting=chunk-target read=-1s used=0s",
		"setting=admit read=everyone used=approval",
	} {
		if !strings.Contains(logs, w) {
			t.Errorf("no warning %q in:\n%s", w, logs)
		}
	}
	again, _ := restore()
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(again)
	if !bytes.Equal(a, b) {
		t.Fatalf("two restores differ:\n%s\n%s", a, b)
	}

	// Settings within bounds are restored as they are, without a warning.
	ok := ClusterState{ClusterID: "c", Voters: 5, Nodes: map[string]NodeMeta{}, Settings: &Settings{Retention: time.Hour, MaxJobs: 7}}
	js, _ = json.Marshal(ok)
	data = snapshotOf(js)
	got, logs = restore()
	if *got.Settings != *ok.Settings || got.Voters != 5 || logs != "" {
		t.Fatalf("in-bounds snapshot: %+v %+v, logs %q", got.Settings, got, logs)
	}
}

// Test_FSM_RestoreRefusesOverlongLength: the state's length in its shortest form only, as
// Persist writes it (0x82 0x00 is 2 in two bytes).
func Test_FSM_RestoreRefusesOverlongLength(t *testing.T) {
	b := append([]byte(snapshotMagic), snapshotVersion, 0x82, 0x00)
	b = append(append(b, "{}"...), 0)
	f := NewFSM(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); !errors.Is(err, ErrSnapshotFormat) {
		t.Fatalf("overlong length: %v", err)
	}
	if _, k := wire.Uvarint(b[len(snapshotMagic)+1:]); k > 0 {
		t.Fatal("the test's length is not overlong")
	}
	// The same snapshot with the length in its shortest form restores.
	good := snapshotOf([]byte(`{"cluster_id":"c"}`))
	if err := f.Restore(io.NopCloser(bytes.NewReader(good))); err != nil || f.State().ClusterID != "c" {
		t.Fatalf("shortest form: %v", err)
	}
}
