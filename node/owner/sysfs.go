package owner

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sysfsSensors reads Linux procfs and sysfs under injectable roots. The
// file has no build tag so its tests run everywhere; NewSensors uses it on
// Linux only.
type sysfsSensors struct {
	cfg SensorConfig
	cpu cpuMeter

	irqs      map[string]uint64 // input-device interrupt counts at the last read
	lastInput time.Time         // zero until input has been seen
}

func newSysfsSensors(cfg SensorConfig) *sysfsSensors {
	return &sysfsSensors{cfg: cfg.withDefaults()}
}

func (s *sysfsSensors) sys(p ...string) string {
	return filepath.Join(append([]string{s.cfg.SysRoot}, p...)...)
}

func (s *sysfsSensors) proc(p ...string) string {
	return filepath.Join(append([]string{s.cfg.ProcRoot}, p...)...)
}

// Read implements Sensors.
func (s *sysfsSensors) Read(now time.Time) Readings {
	r := Unknown()
	r.OwnerCPU = s.readCPU()
	r.OnBattery, r.BatteryPct, _, _ = s.readPower()
	r.TempC = s.readTemp()
	r.IdleFor = s.readIdle(now)
	return r
}

// Available implements Sensors.
func (s *sysfsSensors) Available() []string {
	var found []string
	if _, _, ok := readStat(s.proc("stat")); ok {
		found = append(found, "cpu")
	}
	_, _, battery, ac := s.readPower()
	if battery {
		found = append(found, "battery")
	}
	if ac {
		found = append(found, "ac")
	}
	if s.readTemp() >= 0 {
		found = append(found, "temperature")
	}
	if counts, _ := readInputIRQs(s.proc("interrupts"), s.inputI2CNames()); len(counts) > 0 {
		found = append(found, "idle")
	}
	return found
}

// readCPU returns the owner's CPU share since the last read, or -1.
func (s *sysfsSensors) readCPU() float64 {
	busy, all, ok := readStat(s.proc("stat"))
	if !ok {
		return -1
	}
	procs := map[int]float64{}
	for _, pid := range s.cfg.excluded() {
		// A niced process (the compute child) is in the nice column, which
		// busy leaves out already.
		if t, nice, ok := readProcTicks(s.proc(strconv.Itoa(pid), "stat")); ok && nice <= 0 {
			procs[pid] = t
		}
	}
	return s.cpu.update(busy, all, procs)
}

// readStat parses the aggregate "cpu" line of /proc/stat into the owner's
// busy and total clock ticks. Busy is user + system + irq + softirq: niced
// and idle-priority programs (the nice column: background work such as
// BOINC, another Hydra's compute, a `nice make`) already yield to the owner
// and to Hydra's idle-priority compute alike, and steal is the hypervisor's,
// so neither says the owner is using the machine. Guest time is already
// counted in user and nice.
func readStat(path string) (busy, all float64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	var v [8]float64 // user nice system idle iowait irq softirq steal
	for i := 0; i < len(v) && i+1 < len(f); i++ {
		x, err := strconv.ParseFloat(f[i+1], 64)
		if err != nil {
			return 0, 0, false
		}
		v[i] = x
	}
	for _, x := range v {
		all += x
	}
	busy = v[0] + v[2] + v[5] + v[6]
	return busy, all, true
}

// readProcTicks returns utime+stime (clock ticks) and the nice value from
// /proc/<pid>/stat.
func readProcTicks(path string) (ticks float64, nice int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after the last ')' start with field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 17 {
		return 0, 0, false
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	n, err3 := strconv.Atoi(f[16])               // field 19
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return utime + stime, n, true
}

// readPower reads /sys/class/power_supply. onBattery is true when a system
// battery discharges or every external supply is offline, false when an
// external supply is online or the battery charges, nil when unknown. pct
// is the mean capacity of the system batteries, or -1.
func (s *sysfsSensors) readPower() (onBattery *bool, pct float64, battery, ac bool) {
	dirs, _ := filepath.Glob(s.sys("class", "power_supply", "*"))
	var discharging, charging, online, offline bool
	var sum float64
	n := 0
	for _, d := range dirs {
		switch readString(filepath.Join(d, "type")) {
		case "Battery":
			// Wireless mice and keyboards report their batteries here too,
			// with scope "Device"; only the system's own battery counts.
			if readString(filepath.Join(d, "scope")) == "Device" {
				continue
			}
			battery = true
			switch readString(filepath.Join(d, "status")) {
			case "Discharging":
				discharging = true
			case "Charging", "Full", "Not charging":
				charging = true
			}
			if c, err := strconv.ParseFloat(readString(filepath.Join(d, "capacity")), 64); err == nil && c >= 0 && c <= 100 {
				sum += c
				n++
			}
		case "Mains", "USB", "USB_C", "USB_PD":
			switch readString(filepath.Join(d, "online")) {
			case "1":
				ac, online = true, true
			case "0":
				ac, offline = true, true
			}
		}
	}
	pct = -1
	if n > 0 {
		pct = sum / float64(n)
	}
	yes, no := true, false
	switch {
	case online:
		onBattery = &no
	case discharging:
		onBattery = &yes
	case charging:
		onBattery = &no
	case offline && battery:
		onBattery = &yes
	}
	return onBattery, pct, battery, ac
}

// readTemp returns the hottest thermal zone in °C, falling back to hwmon
// sensors when no thermal zone gives a temperature (there are none, or they
// report nothing usable: a desktop's lone acpitz zone that fails to read
// while its CPU's k10temp or coretemp sits in hwmon); -1 when neither does.
func (s *sysfsSensors) readTemp() float64 {
	if c := hottest(s.sys("class", "thermal", "thermal_zone*", "temp")); c >= 0 {
		return c
	}
	return hottest(s.sys("class", "hwmon", "hwmon*", "temp*_input"))
}

// hottest returns the highest plausible temperature in °C of the
// millidegree files matching pattern, or -1.
func hottest(pattern string) float64 {
	files, _ := filepath.Glob(pattern)
	hot := -1.0
	for _, f := range files {
		milli, err := strconv.ParseFloat(readString(f), 64)
		if err != nil {
			continue
		}
		// Zones without a sensor report 0 or nonsense such as -273200.
		if c := milli / 1000; c > 0 && c < 150 && c > hot {
			hot = c
		}
	}
	return hot
}

// inputIRQNames are substrings of /proc/interrupts device names that mean
// keyboard, mouse or touchpad: i8042 is the PS/2 controller behind most
// laptop keyboards and touchpads. I2C touchpads, keyboards and touchscreens
// take their interrupt under their own device name ("ELAN0718:00",
// "SYNA7DB5:01"), which says nothing of input: inputI2CDrivers finds those
// names. USB HID devices share the USB controller's interrupt with disks and
// cameras, so xhci/ehci lines are deliberately not counted.
var inputIRQNames = []string{"i8042", "keyboard", "kbd", "mouse", "touchpad", "i2c_hid", "i2c-hid", "hid"}

// inputI2CDrivers are the drivers, under /sys/bus/i2c/drivers, of I2C input
// devices: HID over I2C (i2c_hid before Linux 5.12, then i2c_hid_acpi and
// i2c_hid_of) and Elan's touchpads. Each device bound to one names, in its
// "name" file, the interrupt line it asked for.
var inputI2CDrivers = []string{"i2c_hid", "i2c_hid_acpi", "i2c_hid_of", "elan_i2c"}

// inputI2CNames returns the lower-case names of the I2C input devices
// (inputI2CDrivers), the names of their lines in /proc/interrupts.
func (s *sysfsSensors) inputI2CNames() []string {
	var names []string
	for _, drv := range inputI2CDrivers {
		files, _ := filepath.Glob(s.sys("bus", "i2c", "drivers", drv, "*", "name"))
		for _, f := range files {
			if name := strings.ToLower(readString(f)); name != "" {
				names = append(names, name)
			}
		}
	}
	return names
}

// readIdle returns the time since input-device interrupts last changed, or
// -1 when no input interrupt line exists or no input has been seen yet.
func (s *sysfsSensors) readIdle(now time.Time) time.Duration {
	counts, ok := readInputIRQs(s.proc("interrupts"), s.inputI2CNames())
	if !ok || len(counts) == 0 {
		s.irqs = nil
		return -1
	}
	if s.irqs != nil {
		for k, v := range counts {
			if prev, seen := s.irqs[k]; !seen || prev != v {
				s.lastInput = now
				break
			}
		}
	}
	s.irqs = counts
	if s.lastInput.IsZero() {
		return -1
	}
	return max(now.Sub(s.lastInput), 0)
}

// readInputIRQs returns the summed per-CPU counts of the input-device lines
// of /proc/interrupts (inputIRQNames, and the lower-case device names in
// devices), keyed by IRQ label.
func readInputIRQs(path string, devices []string) (map[string]uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	counts := map[string]uint64{}
	names := slices.Concat(inputIRQNames, devices)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		label, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the CPU header
		}
		fields := strings.Fields(rest)
		var sum uint64
		i := 0
		for ; i < len(fields); i++ {
			n, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				break
			}
			sum += n
		}
		desc := strings.ToLower(strings.Join(fields[i:], " "))
		for _, name := range names {
			if strings.Contains(desc, name) {
				counts[strings.TrimSpace(label)] = sum
				break
			}
		}
	}
	return counts, true
}

func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
