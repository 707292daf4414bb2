package owner

import (
	"strings"
	"testing"
	"time"
)

// at returns 2026-03-<day> hh:mm in UTC; 2026-03-02 is a Monday.
func at(weekday time.Weekday, hh, mm int) time.Time {
	return time.Date(2026, 3, 1+int(weekday), hh, mm, 0, 0, time.UTC)
}

func TestParseScheduleGood(t *testing.T) {
	type probe struct {
		t    time.Time
		want bool
	}
	cases := []struct {
		spec   string
		probes []probe
	}{
		{"", []probe{{at(time.Wednesday, 12, 0), true}}},
		{"mon-fri 18:00-08:00,sat-sun", []probe{
			{at(time.Monday, 7, 59), false}, // Sunday's window is whole-day, ends at midnight
			{at(time.Monday, 12, 0), false},
			{at(time.Monday, 17, 59), false},
			{at(time.Monday, 18, 0), true},
			{at(time.Tuesday, 7, 59), true}, // Monday's window, next morning
			{at(time.Tuesday, 8, 0), false},
			{at(time.Saturday, 7, 0), true}, // Friday's window and Saturday's
			{at(time.Saturday, 14, 0), true},
			{at(time.Sunday, 23, 59), true},
		}},
		{"fri 22:00-06:00", []probe{
			{at(time.Friday, 21, 59), false},
			{at(time.Friday, 22, 0), true},
			{at(time.Saturday, 5, 59), true},
			{at(time.Saturday, 6, 0), false},
			{at(time.Friday, 5, 0), false}, // Thursday started no window
		}},
		{"09:00-17:00", []probe{
			{at(time.Sunday, 9, 0), true},
			{at(time.Wednesday, 16, 59), true},
			{at(time.Wednesday, 17, 0), false},
			{at(time.Wednesday, 8, 59), false},
		}},
		{"fri-mon", []probe{ // wraps over the weekend
			{at(time.Friday, 0, 0), true},
			{at(time.Sunday, 12, 0), true},
			{at(time.Monday, 23, 59), true},
			{at(time.Tuesday, 0, 0), false},
			{at(time.Thursday, 12, 0), false},
		}},
		{" Sat 12:00-24:00 , daily 01:00-02:00 ", []probe{
			{at(time.Saturday, 23, 59), true},
			{at(time.Saturday, 11, 59), false},
			{at(time.Tuesday, 1, 30), true},
			{at(time.Tuesday, 2, 0), false},
		}},
	}
	for _, tc := range cases {
		s, err := ParseSchedule(tc.spec)
		if err != nil {
			t.Fatalf("ParseSchedule(%q): %v", tc.spec, err)
		}
		for _, p := range tc.probes {
			if got := s.Allowed(p.t); got != p.want {
				t.Errorf("%q at %s: allowed = %v, want %v", tc.spec, p.t.Format("Mon 15:04"), got, p.want)
			}
		}
	}
}

func TestScheduleLocalTime(t *testing.T) {
	loc := time.FixedZone("UTC+10", 10*3600)
	s := MustParseSchedule("mon 09:00-10:00")
	local := time.Date(2026, 3, 2, 9, 30, 0, 0, loc) // Monday 09:30 there, Sunday 23:30 UTC
	if !s.Allowed(local) || s.Allowed(local.UTC()) {
		t.Fatal("schedule must read the wall clock in the time's location")
	}
}

func TestParseScheduleBad(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"mon-fxi 18:00-08:00", `bad day "fxi"`},
		{"monday", `bad day "monday"`},
		{"mon 18:00", `bad times "18:00"`},
		{"mon 25:00-26:00", `bad time "25:00"`},
		{"mon 18:60-19:00", `bad time "18:60"`},
		{"mon 24:00-08:00", `bad time "24:00"`},
		{"mon 18-19", `bad time "18"`},
		{"mon 18:00-18:00", "same minute"},
		{"mon-fri 18:00-08:00,,sat", "empty item"},
		{"mon tue 10:00-11:00", "3 words"},
		{"mon-fri 18:00-08:00,sat-sum", `window "sat-sum": bad day "sum"`},
	} {
		_, err := ParseSchedule(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSchedule(%q) = %v, want an error containing %s", tc.spec, err, tc.want)
		}
	}
}

func TestMustParseSchedulePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	MustParseSchedule("never")
}
