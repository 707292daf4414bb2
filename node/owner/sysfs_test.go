package owner

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fakeTree is a fake /sys and /proc under t.TempDir().
type fakeTree struct {
	t         *testing.T
	sys, proc string
}

func newFakeTree(t *testing.T) *fakeTree {
	dir := t.TempDir()
	return &fakeTree{t: t, sys: filepath.Join(dir, "sys"), proc: filepath.Join(dir, "proc")}
}

func (f *fakeTree) write(path, content string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeTree) supply(name string, files map[string]string) {
	for k, v := range files {
		f.write(filepath.Join(f.sys, "class", "power_supply", name, k), v+"\n")
	}
}

// stat writes /proc/stat with the given ticks (steal is a tenth of idle).
func (f *fakeTree) stat(user, nice, system, idle, iowait int) {
	f.write(filepath.Join(f.proc, "stat"), fmt.Sprintf(
		"cpu  %d %d %d %d %d 0 0 %d 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\nintr 1 2 3\n", user, nice, system, idle, iowait, idle/10))
}

// pidStat writes /proc/<pid>/stat with utime, stime and nice.
func (f *fakeTree) pidStat(pid, utime, stime, nice int) {
	f.write(filepath.Join(f.proc, fmt.Sprint(pid), "stat"), fmt.Sprintf(
		"%d (hydra (compute) x) S 1 %d %d 0 -1 4194560 100 0 0 0 %d %d 0 0 39 %d 4 0 100 0 0\n",
		pid, pid, pid, utime, stime, nice))
}

func (f *fakeTree) interrupts(i8042, other int) {
	f.write(filepath.Join(f.proc, "interrupts"), fmt.Sprintf(""+
		"           CPU0       CPU1\n"+
		"  1:  %10d          3   IO-APIC    1-edge      i8042\n"+
		" 16:  %10d          0   IO-APIC   16-fasteoi   xhci_hcd\n"+
		"NMI:          0          0   Non-maskable interrupts\n", i8042, other))
}

func (f *fakeTree) sensors(exclude ...int) *sysfsSensors {
	return newSysfsSensors(SensorConfig{SysRoot: f.sys, ProcRoot: f.proc, ExcludePIDs: func() []int { return exclude }})
}

func TestSensorsEmptyTreeIsUnknown(t *testing.T) {
	f := newFakeTree(t)
	s := f.sensors()
	for range 2 {
		r := s.Read(t0)
		if r != Unknown() {
			t.Fatalf("empty tree: %+v, want all unknown", r)
		}
	}
	if got := s.Available(); len(got) != 0 {
		t.Fatalf("Available() = %v", got)
	}
}

func TestSensorsBattery(t *testing.T) {
	f := newFakeTree(t)
	f.supply("AC", map[string]string{"type": "Mains", "online": "0"})
	f.supply("BAT0", map[string]string{"type": "Battery", "status": "Discharging", "capacity": "42", "scope": "System"})
	// A wireless mouse's battery must not count.
	f.supply("hidpp_battery_0", map[string]string{"type": "Battery", "status": "Discharging", "capacity": "5", "scope": "Device"})
	s := f.sensors()
	r := s.Read(t0)
	if r.OnBattery == nil || !*r.OnBattery || r.BatteryPct != 42 {
		t.Fatalf("discharging: OnBattery %v, BatteryPct %v", r.OnBattery, r.BatteryPct)
	}
	if got := s.Available(); !slices.Equal(got, []string{"battery", "ac"}) {
		t.Fatalf("Available() = %v", got)
	}

	// Plugged in: AC online wins, even before the battery says so.
	f.supply("AC", map[string]string{"online": "1"})
	if r := s.Read(t0); r.OnBattery == nil || *r.OnBattery {
		t.Fatalf("AC online: OnBattery %v", r.OnBattery)
	}
	// No Mains supply at all, battery charging.
	g := newFakeTree(t)
	g.supply("BAT1", map[string]string{"type": "Battery", "status": "Charging", "capacity": "80"})
	g.supply("BAT2", map[string]string{"type": "Battery", "status": "Charging", "capacity": "60"})
	if r := g.sensors().Read(t0); r.OnBattery == nil || *r.OnBattery || r.BatteryPct != 70 {
		t.Fatalf("charging: OnBattery %v, BatteryPct %v", r.OnBattery, r.BatteryPct)
	}
	// A desktop: mains only, no battery.
	h := newFakeTree(t)
	h.supply("AC", map[string]string{"type": "Mains", "online": "1"})
	if r := h.sensors().Read(t0); r.OnBattery == nil || *r.OnBattery || r.BatteryPct != -1 {
		t.Fatalf("desktop: OnBattery %v, BatteryPct %v", r.OnBattery, r.BatteryPct)
	}
}

func TestSensorsThermal(t *testing.T) {
	f := newFakeTree(t)
	zone := func(i int, milli string) {
		f.write(filepath.Join(f.sys, "class", "thermal", fmt.Sprintf("thermal_zone%d", i), "temp"), milli+"\n")
	}
	zone(0, "45000")
	zone(1, "82500")
	zone(2, "-273200") // a zone without a sensor
	zone(3, "garbage")
	s := f.sensors()
	if r := s.Read(t0); r.TempC != 82.5 {
		t.Fatalf("TempC = %v, want 82.5", r.TempC)
	}
	if got := s.Available(); !slices.Equal(got, []string{"temperature"}) {
		t.Fatalf("Available() = %v", got)
	}
	// hwmon only where there are no thermal zones.
	g := newFakeTree(t)
	g.write(filepath.Join(g.sys, "class", "hwmon", "hwmon2", "temp1_input"), "61000\n")
	g.write(filepath.Join(g.sys, "class", "hwmon", "hwmon2", "temp3_input"), "67000\n")
	if r := g.sensors().Read(t0); r.TempC != 67 {
		t.Fatalf("hwmon TempC = %v, want 67", r.TempC)
	}
}

// TestSensorsThermalZonesWithoutReadingFallBackToHwmon: thermal zones that give no usable
// temperature (a zone that reads 0, nonsense, or fails to read) are as good as none, so the
// CPU's hwmon sensor counts. Read only the zones, the sensor said "unknown" and the heat rule
// never fired on a machine whose CPU ran at 95 °C.
func TestSensorsThermalZonesWithoutReadingFallBackToHwmon(t *testing.T) {
	f := newFakeTree(t)
	f.write(filepath.Join(f.sys, "class", "thermal", "thermal_zone0", "temp"), "0\n")
	f.write(filepath.Join(f.sys, "class", "thermal", "thermal_zone1", "temp"), "") // read fails (ENODATA)
	f.write(filepath.Join(f.sys, "class", "hwmon", "hwmon1", "temp1_input"), "95000\n")
	s := f.sensors()
	if r := s.Read(t0); r.TempC != 95 {
		t.Fatalf("TempC = %v, want 95 from hwmon", r.TempC)
	}
	if got := s.Available(); !slices.Equal(got, []string{"temperature"}) {
		t.Fatalf("Available() = %v", got)
	}
	// A zone that reads does not add the hwmon sensors (they repeat the zones).
	f.write(filepath.Join(f.sys, "class", "thermal", "thermal_zone2", "temp"), "50000\n")
	if r := s.Read(t0); r.TempC != 50 {
		t.Fatalf("TempC = %v, want 50 from the zone", r.TempC)
	}
}

func TestSensorsOwnerCPU(t *testing.T) {
	f := newFakeTree(t)
	const child, self = 4242, 77
	// The compute child is niced (its time is in the nice column); the node
	// itself is not (user column). Steal (idle/10) is the hypervisor's.
	f.stat(1000, 0, 500, 8000, 500)
	f.pidStat(child, 300, 100, 19)
	f.pidStat(self, 10, 10, 0)
	s := f.sensors(child, self)
	if r := s.Read(t0); r.OwnerCPU != -1 {
		t.Fatalf("first read: OwnerCPU %v, want unknown", r.OwnerCPU)
	}
	// Next 1000 ticks (+20 steal): user 200 (node 100 of it), system 100,
	// nice 500 (the child), idle 200. Owner: 300 - 100 = 200 of 1020.
	f.stat(1200, 500, 600, 8200, 500)
	f.pidStat(child, 700, 100, 19)
	f.pidStat(self, 60, 60, 0)
	if r := s.Read(t0.Add(time.Second)); math.Abs(r.OwnerCPU-200.0/1020) > 1e-9 {
		t.Fatalf("OwnerCPU = %v, want %v", r.OwnerCPU, 200.0/1020)
	}
	// Totals that did not move: unknown, not a division by zero.
	if r := s.Read(t0.Add(2 * time.Second)); r.OwnerCPU != -1 {
		t.Fatalf("no progress: OwnerCPU %v, want unknown", r.OwnerCPU)
	}
	// Another niced program (BOINC, another Hydra) busy: not the owner.
	f.stat(1200, 1400, 600, 8300, 500)
	if r := s.Read(t0.Add(3 * time.Second)); r.OwnerCPU != 0 {
		t.Fatalf("niced work counted as the owner's: OwnerCPU %v", r.OwnerCPU)
	}
	// A new excluded process at nice 0: its earlier CPU is unknown, so is
	// the owner's; then it is measured again.
	f.pidStat(child+1, 50, 0, 0)
	s.cfg.ExcludePIDs = func() []int { return []int{child + 1} }
	f.stat(1300, 1400, 600, 8400, 500)
	if r := s.Read(t0.Add(4 * time.Second)); r.OwnerCPU != -1 {
		t.Fatalf("new child: OwnerCPU %v, want unknown", r.OwnerCPU)
	}
	f.stat(2200, 1400, 600, 8500, 500) // 900 user, all the new process's
	f.pidStat(child+1, 950, 0, 0)
	if r := s.Read(t0.Add(5 * time.Second)); r.OwnerCPU != 0 {
		t.Fatalf("OwnerCPU = %v, want 0", r.OwnerCPU)
	}
	if got := s.Available(); !slices.Equal(got, []string{"cpu"}) {
		t.Fatalf("Available() = %v", got)
	}
}

func TestSensorsIdleFromInterrupts(t *testing.T) {
	f := newFakeTree(t)
	f.interrupts(100, 5000)
	s := f.sensors()
	if r := s.Read(t0); r.IdleFor != -1 {
		t.Fatalf("first read: IdleFor %v, want unknown", r.IdleFor)
	}
	// USB controller traffic (a disk) is not input.
	f.interrupts(100, 9000)
	if r := s.Read(t0.Add(10 * time.Second)); r.IdleFor != -1 {
		t.Fatalf("no input yet: IdleFor %v, want unknown", r.IdleFor)
	}
	f.interrupts(130, 9000) // keystrokes
	if r := s.Read(t0.Add(20 * time.Second)); r.IdleFor != 0 {
		t.Fatalf("just typed: IdleFor %v, want 0", r.IdleFor)
	}
	if r := s.Read(t0.Add(80 * time.Second)); r.IdleFor != time.Minute {
		t.Fatalf("a minute later: IdleFor %v, want 1m", r.IdleFor)
	}
	if got := s.Available(); !slices.Equal(got, []string{"idle"}) {
		t.Fatalf("Available() = %v", got)
	}
	// No input line at all: unknown.
	g := newFakeTree(t)
	g.write(filepath.Join(g.proc, "interrupts"), "   CPU0\n 26:   16   IO-APIC   4-edge   ttyS0\n")
	gs := g.sensors()
	gs.Read(t0)
	if r := gs.Read(t0.Add(time.Minute)); r.IdleFor != -1 {
		t.Fatalf("no input device: IdleFor %v, want unknown", r.IdleFor)
	}
}

// TestSensorsDrivePolicy: a fake sysfs says the laptop went on battery and
// the policy pauses after PauseAfter.
func TestSensorsDrivePolicy(t *testing.T) {
	f := newFakeTree(t)
	f.supply("AC", map[string]string{"type": "Mains", "online": "1"})
	f.supply("BAT0", map[string]string{"type": "Battery", "status": "Charging", "capacity": "90"})
	s := f.sensors()
	p := mustNew(t, DefaultConfig())
	now := t0
	step := func() Decision { now = now.Add(250 * time.Millisecond); return p.Decide(s.Read(now), now) }
	for range 8 {
		if d := step(); d.State != StateRun {
			t.Fatalf("on mains: %v", d)
		}
	}
	f.supply("AC", map[string]string{"online": "0"})
	f.supply("BAT0", map[string]string{"status": "Discharging"})
	var d Decision
	for i := 0; i < 5; i++ {
		d = step()
	}
	if d.String() != "paused: on battery" {
		t.Fatalf("unplugged for 1 s: %v", d)
	}
}

func TestNewSensorsRealMachine(t *testing.T) {
	s := NewSensors(SensorConfig{})
	s.Read(time.Now())
	r := s.Read(time.Now())
	t.Logf("available %v; readings %+v", s.Available(), r)
	if r.OwnerCPU > 1 || r.BatteryPct > 100 || r.TempC > 150 {
		t.Fatalf("implausible readings %+v", r)
	}
}

// TestSensorsIdleFromI2CTouchpad: an I2C touchpad (most laptops' since about 2016) takes its
// interrupt under its own device name, "ELAN0718:00", not under any word that says input; the
// name is in sysfs, under the driver it is bound to. The sensor matched only fixed words, so the
// idle rule never saw the touchpad: an owner reading and scrolling was idle, and compute started
// under their hand after --idle-after.
func TestSensorsIdleFromI2CTouchpad(t *testing.T) {
	f := newFakeTree(t)
	touch := func(n int) {
		f.write(filepath.Join(f.proc, "interrupts"), fmt.Sprintf(""+
			"            CPU0       CPU1\n"+
			" 27:  %10d          0  IR-IO-APIC   27-fasteoi   idma64.1, i2c_designware.1\n"+
			" 51:  %10d          0  IR-IO-APIC   51-fasteoi   ELAN0718:00\n"+
			" 52:  %10d          0  IR-IO-APIC   52-fasteoi   INT33D5:00\n", 3*n, n, 7))
	}
	f.write(filepath.Join(f.sys, "bus", "i2c", "drivers", "i2c_hid_acpi", "i2c-ELAN0718:00", "name"), "ELAN0718:00\n")
	f.write(filepath.Join(f.sys, "bus", "i2c", "drivers", "i2c_hid_acpi", "module", "refcnt"), "1\n") // not a device
	touch(100)
	s := f.sensors()
	if r := s.Read(t0); r.IdleFor != -1 {
		t.Fatalf("first read: IdleFor %v, want unknown", r.IdleFor)
	}
	if got := s.Available(); !slices.Equal(got, []string{"idle"}) {
		t.Fatalf("Available() = %v, want the touchpad's line seen", got)
	}
	touch(250) // a finger on the touchpad
	if r := s.Read(t0.Add(10 * time.Second)); r.IdleFor != 0 {
		t.Fatalf("just touched: IdleFor %v, want 0", r.IdleFor)
	}
	if r := s.Read(t0.Add(70 * time.Second)); r.IdleFor != time.Minute {
		t.Fatalf("a minute later: IdleFor %v, want 1m", r.IdleFor)
	}
}
