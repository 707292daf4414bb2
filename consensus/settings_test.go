package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSettingsSetAndBounds(t *testing.T) {
	s, err := DefaultSettings().Set("retention=72h", "disk-cap=8GiB", "max-jobs=20000")
	if err != nil || s != (Settings{Retention: 72 * time.Hour, DiskCap: 8 << 30, MaxJobs: 20000}) {
		t.Fatalf("%+v %v", s, err)
	}
	if err := DefaultSettings().Validate(); err != nil || DefaultSettings().MaxJobs < 10_000 {
		t.Fatalf("defaults %+v: %v", DefaultSettings(), err)
	}
	for _, bad := range []string{"retention=30s", "retention=1000000h", "retention=soon", "disk-cap=100", "disk-cap=-1",
		"disk-cap=2PiB", "disk-cap=lots", "max-jobs=0", "max-jobs=2000000", "max-jobs=1e3", "colour=blue", "retention"} {
		if _, err := DefaultSettings().Set(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if s, err := DefaultSettings().Set("read-auth=true"); err != nil || !s.ReadAuth {
		t.Fatalf("read-auth=true: %+v %v", s, err)
	}
	if _, err := DefaultSettings().Set("read-auth=maybe"); err == nil {
		t.Error("read-auth=maybe accepted")
	}
	if s, err := DefaultSettings().Set("disk-cap=0"); err != nil || s.DiskCap != 0 {
		t.Fatalf("disk-cap=0 (no cap): %+v %v", s, err)
	}
	for in, want := range map[string]int64{"8GiB": 8 << 30, "8G": 8 << 30, "500MB": 500e6, "1073741824": 1 << 30, "1.5GiB": 3 << 29, " 2 MiB ": 2 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d %v, want %d", in, got, err, want)
		}
	}
	for _, n := range []int64{0, 1, 8 << 30, 1500000, 3 << 29} {
		if got, err := ParseSize(FormatSize(n)); err != nil || got != n {
			t.Errorf("FormatSize(%d) = %s reads back as %d %v", n, FormatSize(n), got, err)
		}
	}
}

// TestSettingsReplicated: the founder's settings come with init, OpSettings replaces them
// (validated by every replica), and a snapshot carries them.
func TestSettingsReplicated(t *testing.T) {
	f := NewFSM(nil)
	if res := apply(f, 1, mustCmd(t, OpSettings, SettingsChange{Settings: DefaultSettings()})); !isRejected(res) {
		t.Fatalf("settings before init: %v", res)
	}
	if got := f.State().EffectiveSettings(); got != DefaultSettings() {
		t.Fatalf("no settings yet: %+v", got)
	}
	founder := Settings{Retention: time.Hour, DiskCap: 0, MaxJobs: 100}
	if res := apply(f, 2, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t", Settings: &founder})); res != nil {
		t.Fatalf("init: %v", res)
	}
	if got := f.State().EffectiveSettings(); got != founder {
		t.Fatalf("after init %+v, want the founder's %+v", got, founder)
	}
	if res := apply(f, 3, mustCmd(t, OpSettings, SettingsChange{Settings: Settings{Retention: time.Second, MaxJobs: 5}})); !isRejected(res) {
		t.Fatalf("retention 1s: %v", res)
	}
	next := Settings{Retention: 72 * time.Hour, DiskCap: 8 << 30, MaxJobs: 20000}
	if res := apply(f, 4, mustCmd(t, OpSettings, SettingsChange{Settings: next})); res != nil {
		t.Fatalf("set: %v", res)
	}
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if got := g.State().EffectiveSettings(); got != next {
		t.Fatalf("restored %+v, want %+v", got, next)
	}
	st := f.State()
	st.Settings.MaxJobs = 1 // a copy: the FSM's state is not touched
	if f.State().EffectiveSettings() != next {
		t.Fatal("State shares the settings")
	}
}

func isRejected(res any) bool {
	err, ok := res.(error)
	return ok && errors.Is(err, ErrRejected) && strings.Contains(err.Error(), "settings")
}

// TestSettingsChangeFromStaleBaseRefused: a change made from settings that are no longer the
// cluster's (a lagging replica, or two admins at once) is refused with ErrSettingsChanged and
// changes nothing, so it cannot undo the other change (read-auth turned on, then off again by a
// change of max-jobs made from the old settings); made from the current settings it applies.
func TestSettingsChangeFromStaleBaseRefused(t *testing.T) {
	f := NewFSM(nil)
	old := Settings{Retention: time.Hour, MaxJobs: 100}
	if res := apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t", Settings: &old})); res != nil {
		t.Fatalf("init: %v", res)
	}
	locked := old
	locked.ReadAuth = true
	if res := apply(f, 2, mustCmd(t, OpSettings, SettingsChange{Settings: locked, Base: &old})); res != nil {
		t.Fatalf("read-auth on: %v", res)
	}
	stale := old
	stale.MaxJobs = 50000
	res := apply(f, 3, mustCmd(t, OpSettings, SettingsChange{Settings: stale, Base: &old}))
	if err, _ := res.(error); !errors.Is(err, ErrSettingsChanged) || !isRejected(res) {
		t.Fatalf("a change from stale settings: %v, want ErrSettingsChanged", res)
	}
	if got := f.State().EffectiveSettings(); got != locked {
		t.Fatalf("after the refused change %+v, want %+v", got, locked)
	}
	fresh := locked
	fresh.MaxJobs = 50000
	if res := apply(f, 4, mustCmd(t, OpSettings, SettingsChange{Settings: fresh, Base: &locked})); res != nil {
		t.Fatalf("a change from the current settings: %v", res)
	}
	if got := f.State().EffectiveSettings(); got != fresh {
		t.Fatalf("after the change %+v, want %+v", got, fresh)
	}
}

// TestRefusedInitLeavesNoTrace: an init whose settings are out of bounds is refused before it
// changes anything (it set the cluster ID, token and voters first, so the cluster counted as
// initialized with no credential and no member, and every later init was refused).
func TestRefusedInitLeavesNoTrace(t *testing.T) {
	f := NewFSM(nil)
	bad := Settings{Retention: time.Second, MaxJobs: 5}
	if res, _ := apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t", Voters: 3, Settings: &bad})).(error); !errors.Is(res, ErrRejected) {
		t.Fatalf("init with bad settings: %v", res)
	}
	if st := f.State(); st.Initialized() || st.ClusterID != "" || st.Voters != 0 {
		t.Fatalf("a refused init changed the state: %+v", st)
	}
	good := DefaultSettings()
	if res := apply(f, 2, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t", Settings: &good})); res != nil {
		t.Fatalf("init after a refused one: %v", res)
	}
}

// TestRefusedMemberRemoveLeavesTheMember: a removal with revocation that the full revocation
// list refuses changes nothing (it removed the member, its node and credentials first, so the
// node was gone but not revoked).
func TestRefusedMemberRemoveLeavesTheMember(t *testing.T) {
	f := NewFSM(nil)
	good := DefaultSettings()
	if res := apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t", Settings: &good})); res != nil {
		t.Fatalf("init: %v", res)
	}
	ix := uint64(2)
	for i := range maxRevoked {
		if res := apply(f, ix, mustCmd(t, OpMemberRemove, MemberRemove{ID: fmt.Sprintf("gone-%d", i), Revoke: true})); res != nil {
			t.Fatalf("revoke %d: %v", i, res)
		}
		ix++
	}
	if res := apply(f, ix, mustCmd(t, OpMemberAdd, MemberAdd{ID: "x", Role: RoleMember, At: time.Unix(1e9, 0).UTC()})); res != nil {
		t.Fatalf("add: %v", res)
	}
	if res, _ := apply(f, ix+1, mustCmd(t, OpMemberRemove, MemberRemove{ID: "x", Revoke: true})).(error); !errors.Is(res, ErrRejected) {
		t.Fatalf("a removal the full revocation list refuses: %v", res)
	}
	if _, ok := f.State().Members["x"]; !ok {
		t.Fatal("the refused removal removed the member")
	}
}

// TestForwardedSettingsRefusalIsRecognised: a settings change the leader refused because the
// settings changed meanwhile comes back to a follower as text, and still matches
// ErrSettingsChanged (its caller retries it) as well as ErrRejected; other refusals match only
// ErrRejected. A current leader names the errors its refusal wrapped (kinds); one of an older
// version sends the text alone, which is then matched.
func TestForwardedSettingsRefusalIsRecognised(t *testing.T) {
	known := []error{ErrForbidden, ErrSettingsChanged}
	text := fmt.Errorf("%w: settings: %w", ErrRejected, ErrSettingsChanged).Error()
	for _, changed := range []*rejection{
		newRejection(text, []string{ErrRejected.Error(), ErrSettingsChanged.Error()}, known),
		newRejection(text, nil, known), // an older leader
	} {
		if !errors.Is(changed, ErrSettingsChanged) || !errors.Is(changed, ErrRejected) || errors.Is(changed, ErrForbidden) {
			t.Fatalf("%v (%v): not recognised", changed, changed.is)
		}
	}
	other := newRejection(fmt.Errorf("%w: settings: retention 1s", ErrRejected).Error(), nil, known)
	if errors.Is(other, ErrSettingsChanged) || !errors.Is(other, ErrRejected) {
		t.Fatalf("%v: misread", other)
	}
	// A refusal that did not wrap it, whatever its text says.
	named := newRejection(fmt.Errorf("%w: member add: bad name %q", ErrRejected, ErrSettingsChanged.Error()).Error(), []string{ErrRejected.Error()}, known)
	if errors.Is(named, ErrSettingsChanged) || !errors.Is(named, ErrRejected) {
		t.Fatalf("%v: misread", named)
	}
}

// FuzzSettingsSet: the assignments of `hydra config set` (PUT /api/v1/config, up to 16 of at
// most 128 bytes, split here at ';'): Set never panics, what it accepts is within bounds, and
// the settings written the way `hydra config get` shows them (retention as a duration, disk-cap
// as FormatSize) set again give the very same settings.
func FuzzSettingsSet(f *testing.F) {
	for _, s := range []string{"retention=72h;disk-cap=8GiB;max-jobs=20000", "read-auth=true", "disk-cap=1.5GiB",
		"disk-cap=0x1p40", "retention=1h0m0.000000001s", "disk-cap= 2 MiB ", "max-jobs=-0", "disk-cap=1e15", "disk-cap=4096TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		as := strings.Split(in, ";")
		if len(as) > 16 {
			return
		}
		s, err := DefaultSettings().Set(as...)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("%q accepted: %v", in, err)
		}
		shown := []string{"retention=" + s.Retention.String(), "disk-cap=" + FormatSize(s.DiskCap),
			fmt.Sprintf("max-jobs=%d", s.MaxJobs), fmt.Sprintf("read-auth=%t", s.ReadAuth)}
		again, err := Settings{}.Set(shown...)
		if err != nil || again != s {
			t.Fatalf("%q gave %+v, shown as %q: %+v, %v", in, s, shown, again, err)
		}
		if n, err := ParseSize(FormatSize(s.DiskCap)); err != nil || n != s.DiskCap {
			t.Fatalf("disk-cap %d reads back as %d, %v", s.DiskCap, n, err)
		}
	})
}

// TestLoggedMaxJobsNarrowed: an init and a change committed by an earlier build, whose max-jobs
// bound was 1,000,000, replay with max-jobs at today's bound (as a snapshot restores them,
// clampRestored) instead of being refused: a refused init left the replayed cluster
// uninitialized, a refused change left other settings than a restored snapshot's.
func TestLoggedMaxJobsNarrowed(t *testing.T) {
	f := NewFSM(nil)
	old := Settings{Retention: time.Hour, MaxJobs: 1_000_000}
	if res := apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t", Settings: &old})); res != nil {
		t.Fatalf("init: %v", res)
	}
	if got := f.State().EffectiveSettings().MaxJobs; got != MaxMaxJobs {
		t.Fatalf("max-jobs after init %d, want %d", got, MaxMaxJobs)
	}
	next := Settings{Retention: 2 * time.Hour, MaxJobs: 500_000}
	if res := apply(f, 2, mustCmd(t, OpSettings, SettingsChange{Settings: next, Base: &old})); res != nil {
		t.Fatalf("settings: %v", res)
	}
	if got := f.State().EffectiveSettings(); got.MaxJobs != MaxMaxJobs || got.Retention != 2*time.Hour {
		t.Fatalf("settings after the change %+v, want max-jobs %d, retention 2h", got, MaxMaxJobs)
	}
}
