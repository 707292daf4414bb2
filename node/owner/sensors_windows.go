//go:build windows

package owner

import (
	"log/slog"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// NewSensors returns the sensors of this machine: on Windows, gopsutil's
// CPU times and temperatures (pure Go, no cgo), the power source and
// battery charge from GetSystemPowerStatus, and the time since the last
// keyboard or mouse input from GetLastInputInfo and GetTickCount. Input is
// per session: a service runs in session 0, where no one types, so there
// the idle time is unknown and the idle rule never fires (Available leaves
// "idle" out and says why in the log; run a scheduled task at logon for a
// machine someone works at, or use --dedicated). cfg's roots are ignored.
func NewSensors(cfg SensorConfig) Sensors {
	cfg = cfg.withDefaults()
	return newGopsutilSensors(cfg, newWinSensors(cfg.Logger))
}

var (
	kernel32                 = windows.NewLazySystemDLL("kernel32.dll")
	user32                   = windows.NewLazySystemDLL("user32.dll")
	procGetSystemPowerStatus = kernel32.NewProc("GetSystemPowerStatus")
	procGetTickCount         = kernel32.NewProc("GetTickCount")
	procGetLastInputInfo     = user32.NewProc("GetLastInputInfo")
)

// systemPowerStatus is SYSTEM_POWER_STATUS.
type systemPowerStatus struct {
	ACLineStatus        byte
	BatteryFlag         byte
	BatteryLifePercent  byte
	SystemStatusFlag    byte
	BatteryLifeTime     uint32
	BatteryFullLifeTime uint32
}

// lastInputInfo is LASTINPUTINFO.
type lastInputInfo struct {
	cbSize uint32
	dwTime uint32 // GetTickCount at the session's last input
}

// winSensors are the Windows battery and idle sensors. Not safe for
// concurrent use.
type winSensors struct {
	log      *slog.Logger
	session0 bool // a service: no user input to see
	input    inputIdle
	failed   map[string]bool // failures already logged
}

var _ powerIdleSensors = (*winSensors)(nil)

func newWinSensors(log *slog.Logger) *winSensors {
	s := &winSensors{log: log, failed: map[string]bool{}}
	var session uint32
	if err := windows.ProcessIdToSessionId(windows.GetCurrentProcessId(), &session); err == nil {
		s.session0 = session == 0
	} else {
		s.fail("session id", err)
	}
	return s
}

// fail logs the first failure of what at debug level.
func (s *winSensors) fail(what string, err error) {
	if !s.failed[what] {
		s.failed[what] = true
		s.log.Debug("owner: "+what, "err", err)
	}
}

// power implements powerIdleSensors.
func (s *winSensors) power(time.Time) (*bool, float64) {
	if err := procGetSystemPowerStatus.Find(); err != nil {
		s.fail("GetSystemPowerStatus", err)
		return nil, -1
	}
	var st systemPowerStatus
	if r, _, err := procGetSystemPowerStatus.Call(uintptr(unsafe.Pointer(&st))); r == 0 {
		s.fail("GetSystemPowerStatus", err)
		return nil, -1
	}
	return decodePowerStatus(st.ACLineStatus, st.BatteryFlag, st.BatteryLifePercent)
}

// idle implements powerIdleSensors.
func (s *winSensors) idle(now time.Time) time.Duration {
	if s.session0 {
		return -1
	}
	for _, p := range []*windows.LazyProc{procGetLastInputInfo, procGetTickCount} {
		if err := p.Find(); err != nil {
			s.fail(p.Name, err)
			return -1
		}
	}
	// dwTime first, then the tick count, so the tick is not older than
	// the input (inputIdle also tolerates a small difference).
	info := lastInputInfo{cbSize: uint32(unsafe.Sizeof(lastInputInfo{}))}
	if r, _, err := procGetLastInputInfo.Call(uintptr(unsafe.Pointer(&info))); r == 0 {
		s.fail("GetLastInputInfo", err)
		return -1
	}
	tick, _, _ := procGetTickCount.Call()
	return s.input.update(now, uint32(tick), info.dwTime)
}

// available implements powerIdleSensors.
func (s *winSensors) available(now time.Time) []string {
	if s.session0 {
		s.log.Info("owner: running in session 0 (a Windows service), where no keyboard or mouse input is visible: " +
			"idle time is unknown and the idle rule never fires; use --dedicated, or a scheduled task at logon on a machine someone works at")
	}
	onBattery, pct := s.power(now)
	return powerIdleNames(onBattery, pct, s.idle(now))
}
