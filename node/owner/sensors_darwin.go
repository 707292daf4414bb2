//go:build darwin

package owner

import "context"

// NewSensors returns the sensors of this machine: on macOS, gopsutil's CPU
// times and temperatures (pure Go, no cgo), the power source and battery
// charge from `/usr/bin/pmset -g batt` (re-run at most every 5 s) and the
// time since the last keyboard, mouse or trackpad input from the
// HIDIdleTime of `/usr/sbin/ioreg -c IOHIDSystem -d 4` (at most every 2 s;
// it covers every session, so a launchd daemon sees it too). The commands
// run in the background with a 2 s timeout, so a read never waits for
// them; one that fails makes its reading unknown, and its first failure is
// logged at debug level. cfg's roots are ignored.
func NewSensors(cfg SensorConfig) Sensors {
	cfg = cfg.withDefaults()
	run := func(ctx context.Context, path string, args ...string) ([]byte, error) {
		return runCommand(ctx, cmdTimeout, path, args...)
	}
	return newGopsutilSensors(cfg, newCmdSensors(run, cfg.Logger))
}

var _ powerIdleSensors = (*cmdSensors)(nil)
