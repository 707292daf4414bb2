//go:build !linux

package owner

import (
	"context"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/process"
	"github.com/shirou/gopsutil/v4/sensors"
)

// NewSensors returns the sensors of this machine: on macOS, Windows and
// other systems, gopsutil's CPU times and temperatures (pure Go, no cgo);
// battery and idle time are unknown. cfg's roots are ignored.
func NewSensors(cfg SensorConfig) Sensors {
	return &gopsutilSensors{cfg: cfg.withDefaults()}
}

// gopsutilSensors reads CPU times and temperatures through gopsutil.
type gopsutilSensors struct {
	cfg SensorConfig
	cpu cpuMeter
}

// Read implements Sensors.
func (s *gopsutilSensors) Read(time.Time) Readings {
	r := Unknown()
	r.OwnerCPU = s.readCPU()
	r.TempC = readTemperatures()
	return r
}

// Available implements Sensors.
func (s *gopsutilSensors) Available() []string {
	var found []string
	if _, err := cpu.Times(false); err == nil {
		found = append(found, "cpu")
	}
	if readTemperatures() >= 0 {
		found = append(found, "temperature")
	}
	return found
}

func (s *gopsutilSensors) readCPU() float64 {
	ts, err := cpu.Times(false)
	if err != nil || len(ts) == 0 {
		s.cfg.Logger.Debug("owner: cpu times", "err", err)
		return -1
	}
	t := ts[0]
	all := t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	busy := all - t.Idle - t.Iowait
	procs := map[int]float64{}
	for _, pid := range s.cfg.excluded() {
		p, err := process.NewProcess(int32(pid))
		if err != nil {
			continue
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
