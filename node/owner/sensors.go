package owner

import (
	"log/slog"
	"os"
	"time"
)

// Sensors reads the machine's state for the Policy.
type Sensors interface {
	// Read returns the current Readings; now is the time of the reading
	// (rates such as OwnerCPU are measured between successive calls, so
	// the first call may report them unknown). Not safe for concurrent use.
	Read(now time.Time) Readings
	// Available names the sensors found on this machine ("cpu", "battery",
	// "ac", "temperature", "idle"), for the node to log once at start.
	Available() []string
}

// SensorConfig configures NewSensors. The zero value reads the real machine.
type SensorConfig struct {
	// SysRoot and ProcRoot are where sysfs and procfs are mounted
	// (default "/sys" and "/proc"); tests point them at a fake tree.
	// Only the Linux sensors use them.
	SysRoot, ProcRoot string
	// ExcludePIDs returns the processes whose CPU is Hydra's, not the
	// owner's (the compute child); this process is always excluded. Nil
	// means none besides this process. It is called on every Read.
	ExcludePIDs func() []int
	// Logger receives sensor read errors at debug level; nil discards them.
	Logger *slog.Logger
}

func (c SensorConfig) withDefaults() SensorConfig {
	if c.SysRoot == "" {
		c.SysRoot = "/sys"
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// excluded returns this process and cfg.ExcludePIDs().
func (c SensorConfig) excluded() []int {
	pids := []int{os.Getpid()}
	if c.ExcludePIDs != nil {
		pids = append(pids, c.ExcludePIDs()...)
	}
	return pids
}

// cpuMeter turns cumulative CPU times into the owner's share of the
// machine between two reads.
type cpuMeter struct {
	primed    bool
	busy, all float64         // machine totals at the last read
	procs     map[int]float64 // excluded processes' CPU at the last read
}

// update takes the machine's cumulative busy and total CPU time and the
// excluded processes' cumulative CPU time (same unit; a pid missing from
// procs is gone) and returns the owner's share since the last update, or -1
// when unknown: on the first update, when the totals did not move, or when
// an excluded process is new (its CPU before this read is unknown).
func (m *cpuMeter) update(busy, all float64, procs map[int]float64) float64 {
	prevProcs := m.procs
	prevBusy, prevAll, primed := m.busy, m.all, m.primed
	m.busy, m.all, m.procs, m.primed = busy, all, procs, true
	if !primed || all <= prevAll {
		return -1
	}
	self := 0.0
	for pid, t := range procs {
		prev, ok := prevProcs[pid]
		if !ok {
			return -1
		}
		if t > prev {
			self += t - prev
		}
	}
	owner := (busy - prevBusy - self) / (all - prevAll)
	return min(max(owner, 0), 1)
}
