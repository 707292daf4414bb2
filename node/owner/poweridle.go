package owner

import "time"

// powerIdleSensors are the battery/AC and user-idle sensors of one OS
// other than Linux (sensors_darwin.go, sensors_windows.go; none elsewhere);
// sensors_gopsutil.go adds gopsutil's CPU and temperature to them. No build
// tag, so the pure parts below are tested on every OS.
type powerIdleSensors interface {
	// power returns whether the machine runs from its battery (nil when
	// unknown) and the system battery's charge, 0–100 (<0 unknown), as in
	// Readings.
	power(now time.Time) (onBattery *bool, pct float64)
	// idle returns the time since the owner's last input, <0 unknown.
	idle(now time.Time) time.Duration
	// available reads the sensors afresh and names those that answered
	// ("battery", "ac", "idle"), for Sensors.Available.
	available(now time.Time) []string
}

// powerIdleNames names the sensors that gave a reading: "battery" when
// there is a battery charge, "ac" when the power source is known, "idle"
// when the idle time is.
func powerIdleNames(onBattery *bool, pct float64, idle time.Duration) []string {
	var found []string
	if pct >= 0 {
		found = append(found, "battery")
	}
	if onBattery != nil {
		found = append(found, "ac")
	}
	if idle >= 0 {
		found = append(found, "idle")
	}
	return found
}

// idleSince returns an idle time measured at `at` as seen at now: unknown
// (negative, or no measurement yet) stays unknown, the sum saturates
// instead of overflowing, and a clock that went backwards adds nothing.
func idleSince(idle time.Duration, at, now time.Time) time.Duration {
	if idle < 0 || at.IsZero() {
		return -1
	}
	elapsed := now.Sub(at)
	if elapsed <= 0 {
		return idle
	}
	if idle > maxDuration-elapsed {
		return maxDuration
	}
	return idle + elapsed
}

const maxDuration = time.Duration(1<<63 - 1)
