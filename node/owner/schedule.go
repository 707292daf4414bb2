package owner

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a set of weekly windows in which compute is allowed
// (--schedule). The zero Schedule allows compute at all times.
type Schedule struct {
	src     string
	windows []window
}

// window allows compute on the days in days (bit i = time.Weekday i) from
// start to end, both minutes after midnight; end <= start means the window
// ends the next day.
type window struct {
	days       uint8
	start, end int
}

// errEmpty is returned for an empty schedule item.
var errEmpty = errors.New("empty item")

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseSchedule parses a comma-separated list of windows in local time:
//
//	"mon-fri 18:00-08:00,sat-sun"
//
// Each window is "DAYS", "HH:MM-HH:MM" or "DAYS HH:MM-HH:MM". DAYS is a day
// (mon … sun), a range of days ("mon-fri"; "fri-mon" wraps over the
// weekend) or "daily"; no DAYS means every day, no times the whole day. The
// days are the days a window starts: a window whose end is before its start
// ends the next day, so "fri 22:00-06:00" allows Saturday 05:00. "24:00" is
// allowed as an end. An empty string is the always-allowed Schedule. Bad
// input returns an error that names the bad part.
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Schedule{}, nil
	}
	sch := Schedule{src: s}
	for _, item := range strings.Split(s, ",") {
		w, err := parseWindow(strings.TrimSpace(item))
		if err != nil {
			return Schedule{}, fmt.Errorf("schedule %q: window %q: %w", s, strings.TrimSpace(item), err)
		}
		sch.windows = append(sch.windows, w)
	}
	return sch, nil
}

// MustParseSchedule is ParseSchedule for constants; it panics on an error.
func MustParseSchedule(s string) Schedule {
	sch, err := ParseSchedule(s)
	if err != nil {
		panic(err)
	}
	return sch
}

func parseWindow(item string) (window, error) {
	fields := strings.Fields(item)
	w := window{days: 0x7f, start: 0, end: 24 * 60}
	switch len(fields) {
	case 0:
		return w, errEmpty
	case 1:
		if strings.Contains(fields[0], ":") {
			return w, w.parseTimes(fields[0])
		}
		return w, w.parseDays(fields[0])
	case 2:
		if err := w.parseDays(fields[0]); err != nil {
			return w, err
		}
		return w, w.parseTimes(fields[1])
	default:
		return w, fmt.Errorf("want \"DAYS\", \"HH:MM-HH:MM\" or \"DAYS HH:MM-HH:MM\", got %d words", len(fields))
	}
}

func (w *window) parseDays(s string) error {
	s = strings.ToLower(s)
	if s == "daily" || s == "*" {
		w.days = 0x7f
		return nil
	}
	from, to, isRange := strings.Cut(s, "-")
	a, err := parseDay(from)
	if err != nil {
		return err
	}
	b := a
	if isRange {
		if b, err = parseDay(to); err != nil {
			return err
		}
	}
	w.days = 0
	for d := a; ; d = (d + 1) % 7 {
		w.days |= 1 << d
		if d == b {
			break
		}
	}
	return nil
}

func parseDay(s string) (int, error) {
	for i, n := range dayNames {
		if s == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("bad day %q (want mon, tue, wed, thu, fri, sat, sun, a range like mon-fri, or daily)", s)
}

func (w *window) parseTimes(s string) error {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return fmt.Errorf("bad times %q (want HH:MM-HH:MM)", s)
	}
	var err error
	if w.start, err = parseClock(from, false); err != nil {
		return err
	}
	if w.end, err = parseClock(to, true); err != nil {
		return err
	}
	if w.start == w.end {
		return fmt.Errorf("times %q start and end at the same minute (leave the times out for a whole day)", s)
	}
	return nil
}

// parseClock parses "HH:MM" into minutes after midnight; "24:00" only as an end.
func parseClock(s string, end bool) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(mm) != 2 || len(hh) < 1 || len(hh) > 2 ||
		h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, fmt.Errorf("bad time %q (want HH:MM, 00:00 to 23:59, or 24:00 as an end)", s)
	}
	return h*60 + m, nil
}

// Allowed reports whether compute is allowed at t, read as a wall clock in
// t's location (pass local time: the windows are in local time).
func (s Schedule) Allowed(t time.Time) bool {
	if len(s.windows) == 0 {
		return true
	}
	day := int(t.Weekday())
	prev := (day + 6) % 7
	h, m, _ := t.Clock()
	min := h*60 + m
	for _, w := range s.windows {
		if w.start < w.end {
			if w.days&(1<<day) != 0 && min >= w.start && min < w.end {
				return true
			}
			continue
		}
		// Overnight: from start today, or until end on the day after a start day.
		if (w.days&(1<<day) != 0 && min >= w.start) || (w.days&(1<<prev) != 0 && min < w.end) {
			return true
		}
	}
	return false
}

// IsZero reports whether s is the always-allowed Schedule.
func (s Schedule) IsZero() bool { return len(s.windows) == 0 }

// String returns the text s was parsed from ("" for the zero Schedule).
func (s Schedule) String() string { return s.src }
