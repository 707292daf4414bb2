//go:build !linux

package owner

import (
	"context"
	"runtime"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/process"
	"github.com/shirou/gopsutil/v4/sensors"
)

// gopsutilSensors reads CPU times and temperatures through gopsutil (pure
// Go, no cgo) on every OS but Linux, and battery, AC and idle time through
// the OS's powerIdleSensors (sensors_darwin.go, sensors_windows.go,
// sensors_other.go).
type gopsutilSensors struct {
	cfg       SensorConfig
	cpu       cpuMeter
	osSensors powerIdleSensors

	temp   float64   // the last temperature read
	tempAt time.Time // when; zero before the first read
}

// tempEvery is how often the temperature is read: on Windows gopsutil asks
// WMI, far too costly for every 200 ms reading, and the throttle curve
// needs no more.
const tempEvery = 2 * time.Second

func newGopsutilSensors(cfg SensorConfig, osSensors powerIdleSensors) *gopsutilSensors {
	return &gopsutilSensors{cfg: cfg, osSensors: osSensors}
}

// Read implements Sensors.
func (s *gopsutilSensors) Read(now time.Time) Readings {
	r := Unknown()
	r.OwnerCPU = s.readCPU()
	r.OnBattery, r.BatteryPct = s.osSensors.power(now)
	if s.tempAt.IsZero() || now.Sub(s.tempAt) >= tempEvery || now.Before(s.tempAt) {
		s.temp, s.tempAt = readTemperatures(), now
	}
	r.TempC = s.temp
	r.IdleFor = s.osSensors.idle(now)
	return r
}

// Available implements Sensors.
func (s *gopsutilSensors) Available() []string {
	found := map[string]bool{}
	if _, err := cpu.Times(false); err == nil {
		found["cpu"] = true
	}
	if readTemperatures() >= 0 {
		found["temperature"] = true
	}
	for _, name := range s.osSensors.available(time.Now()) {
		found[name] = true
	}
	var names []string
	for _, name := range []string{"cpu", "battery", "ac", "temperature", "idle"} { // the Linux order
		if found[name] {
			names = append(names, name)
		}
	}
	return names
}

func (s *gopsutilSensors) readCPU() float64 {
	ts, err := cpu.Times(false)
	if err != nil || len(ts) == 0 {
		s.cfg.Logger.Debug("owner: cpu times", "err", err)
		return -1
	}
	t := ts[0]
	all := t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	busy := t.User + t.System + t.Irq + t.Softirq // as on Linux: niced work and steal are not the owner's
	procs := map[int]float64{}
	for _, pid := range s.cfg.excluded() {
		p, err := process.NewProcess(int32(pid))
		if err != nil {
			continue
		}
		// A niced process (the compute child on macOS) is in the Nice
		// column, which busy leaves out already. Windows has no such
		// column (and gopsutil's Nice is the priority class there).
		if runtime.GOOS != "windows" {
			if n, err := p.Nice(); err == nil && n > 0 {
				continue
			}
		}
		if pt, err := p.Times(); err == nil {
			procs[pid] = pt.User + pt.System
		}
	}
	return s.cpu.update(busy, all, procs)
}

// readTemperatures returns the hottest sensor in °C, or -1.
func readTemperatures() float64 {
	ts, _ := sensors.TemperaturesWithContext(context.Background()) // partial results come with an error
	hottest := -1.0
	for _, t := range ts {
		if t.Temperature > 0 && t.Temperature < 150 && t.Temperature > hottest {
			hottest = t.Temperature
		}
	}
	return hottest
}
