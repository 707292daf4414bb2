package owner

import "time"

// The pure parts of the Windows sensors (sensors_windows.go). No build
// tag, so they are tested on every OS.

// SYSTEM_POWER_STATUS values (GetSystemPowerStatus).
const (
	acOffline          = 0
	acOnline           = 1
	batteryCharging    = 8   // BatteryFlag bit
	batteryNone        = 128 // BatteryFlag bit: no system battery
	powerStatusUnknown = 255 // ACLineStatus, BatteryFlag or BatteryLifePercent unknown
)

// decodePowerStatus turns SYSTEM_POWER_STATUS's ACLineStatus, BatteryFlag
// and BatteryLifePercent into Readings' OnBattery and BatteryPct, as the
// Linux sensors do: on external power is false (a desktop without a
// battery too), AC offline with a battery (or one Windows cannot
// describe) is true, AC unknown is false only while the battery charges,
// otherwise nil. pct is -1 without a system battery or when Windows does
// not know the charge.
func decodePowerStatus(acLine, flag, percent byte) (onBattery *bool, pct float64) {
	known := flag != powerStatusUnknown
	noBattery := known && flag&batteryNone != 0
	charging := known && flag&batteryCharging != 0
	yes, no := true, false
	switch {
	case acLine == acOnline:
		onBattery = &no
	case acLine == acOffline && !noBattery:
		onBattery = &yes
	case acLine == powerStatusUnknown && charging:
		onBattery = &no
	}
	pct = -1
	if !noBattery && percent <= 100 {
		pct = float64(percent)
	}
	return onBattery, pct
}

// inputIdle turns GetLastInputInfo's dwTime and GetTickCount, both
// milliseconds since boot in 32 bits, into the time since the last input.
// The subtraction is modulo 2³² so it is right across the tick wrap (every
// 49.7 days) as long as the idle time itself is shorter; to be right
// beyond that too — a machine nobody touches for seven weeks would
// otherwise look used again — it keeps counting on the caller's clock
// while dwTime does not change.
type inputIdle struct {
	last uint32        // dwTime at the last update
	base time.Duration // the idle time when last was first seen
	at   time.Time     // when last was first seen; zero before the first update
}

// inputAhead (ms) is how far dwTime may be ahead of GetTickCount and still
// mean "just now".
const inputAhead = 1000

// update returns the idle time at now, given the current tick count and
// the tick of the last input.
func (t *inputIdle) update(now time.Time, tick, last uint32) time.Duration {
	elapsed := tick - last
	if elapsed > 1<<32-inputAhead {
		// The input is stamped just after the tick count was read (the
		// caller reads dwTime first, but the two clocks may differ by a
		// tick): it happened now, not 49.7 days ago.
		elapsed = 0
	}
	d := time.Duration(elapsed) * time.Millisecond
	if !t.at.IsZero() && last == t.last {
		return max(d, idleSince(t.base, t.at, now))
	}
	t.last, t.base, t.at = last, d, now
	return d
}
