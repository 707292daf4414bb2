//go:build !linux && !darwin && !windows

package owner

import "time"

// NewSensors returns the sensors of this machine: on systems other than
// Linux, macOS and Windows (the BSDs, …), gopsutil's CPU times and
// temperatures (pure Go, no cgo); battery, AC and idle time are unknown.
// cfg's roots are ignored.
func NewSensors(cfg SensorConfig) Sensors {
	return newGopsutilSensors(cfg.withDefaults(), noPowerIdle{})
}

// noPowerIdle knows neither the power source nor the idle time.
type noPowerIdle struct{}

func (noPowerIdle) power(time.Time) (*bool, float64) { return nil, -1 }
func (noPowerIdle) idle(time.Time) time.Duration     { return -1 }
func (noPowerIdle) available(time.Time) []string     { return nil }
