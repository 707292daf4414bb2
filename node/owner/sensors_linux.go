//go:build linux

package owner

// NewSensors returns the sensors of this machine: on Linux, procfs and
// sysfs under cfg's roots (see the package documentation).
func NewSensors(cfg SensorConfig) Sensors {
	return newSysfsSensors(cfg)
}
