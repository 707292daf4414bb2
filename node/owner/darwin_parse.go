package owner

import (
	"strconv"
	"strings"
	"time"
)

// The parsers of the macOS commands the darwin sensors run. They have no
// build tag so their tests and fuzz targets run on every OS; only
// sensors_darwin.go calls them for real.

// parsePmsetBatt reads the output of `pmset -g batt`:
//
//	Now drawing from 'Battery Power'
//	 -InternalBattery-0 (id=4653155)	85%; discharging; 5:12 remaining present: true
//
// onBattery comes from the "Now drawing from" line: 'AC Power' is false,
// 'Battery Power' and 'UPS Power' (a desktop on its UPS during a power cut)
// are true; without that line, the first internal battery's state decides
// (discharging true; charging, charged, AC attached false). nil when
// neither tells. pct is the mean charge of the internal batteries, 0–100,
// or -1 when there is none (a Mac mini: 'AC Power' and no battery line,
// so onBattery is false and pct -1, as on a Linux desktop). Anything it
// does not recognise is unknown, never an error.
func parsePmsetBatt(out string) (onBattery *bool, pct float64) {
	var source, state *bool
	yes, no := true, false
	var sum float64
	n := 0
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "Now drawing from '"); ok && source == nil {
			name, _, _ := strings.Cut(rest, "'")
			switch name {
			case "AC Power":
				source = &no
			case "Battery Power", "UPS Power":
				source = &yes
			}
			continue
		}
		if !strings.HasPrefix(line, "-InternalBattery") {
			continue
		}
		// "-InternalBattery-0 (id=4653155)\t85%; discharging; …": the
		// fields after the name are separated by "; ".
		_, fields, ok := strings.Cut(line, "\t")
		if !ok {
			// Some versions separate with spaces: the fields start at the
			// first word ending in "%;".
			i := strings.Index(line, "%;")
			if i < 0 {
				continue
			}
			j := strings.LastIndexAny(line[:i], " \t)")
			fields = line[j+1:]
		}
		parts := strings.Split(fields, ";")
		if p, ok := strings.CutSuffix(strings.TrimSpace(parts[0]), "%"); ok {
			if v, err := strconv.ParseFloat(p, 64); err == nil && v >= 0 && v <= 100 {
				sum += v
				n++
			}
		}
		if state == nil && len(parts) > 1 {
			switch strings.TrimSpace(parts[1]) {
			case "discharging":
				state = &yes
			case "charging", "charged", "finishing charge", "AC attached":
				state = &no
			}
		}
	}
	pct = -1
	if n > 0 {
		pct = sum / float64(n)
	}
	if source != nil {
		return source, pct
	}
	return state, pct
}

// parseHIDIdle reads the output of `ioreg -c IOHIDSystem -d 4`, whose
// IOHIDSystem entry has a line
//
//	|   "HIDIdleTime" = 1419958123
//
// (nanoseconds since the last keyboard, mouse or trackpad event, across
// all sessions). It returns the first such value, or -1 when there is none
// or it is not a non-negative number of nanoseconds that fits a Duration.
func parseHIDIdle(out string) time.Duration {
	const key = `"HIDIdleTime"`
	for {
		i := strings.Index(out, key)
		if i < 0 {
			return -1
		}
		out = out[i+len(key):]
		rest, ok := strings.CutPrefix(strings.TrimLeft(out, " \t"), "=")
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, " \t")
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		ns, err := strconv.ParseInt(rest[:end], 10, 64) // fails on "" and on overflow
		if err != nil {
			return -1
		}
		return time.Duration(ns)
	}
}
