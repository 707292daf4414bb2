package owner

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
	"unsafe"
)

// The Windows structs must match the C layouts the calls write into.
func TestWindowsStructSizes(t *testing.T) {
	if n := unsafe.Sizeof(systemPowerStatus{}); n != 12 {
		t.Errorf("SYSTEM_POWER_STATUS is %d bytes, want 12", n)
	}
	if n := unsafe.Sizeof(lastInputInfo{}); n != 8 {
		t.Errorf("LASTINPUTINFO is %d bytes, want 8", n)
	}
}

// TestWindowsSensorsRealMachine calls the real APIs: none may fail, and
// the readings must be in range.
func TestWindowsSensorsRealMachine(t *testing.T) {
	var logs bytes.Buffer
	s := newWinSensors(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	now := time.Now()
	on, pct := s.power(now)
	idle := s.idle(now)
	t.Logf("session 0 %v; on battery %s, %v %%; idle %v; available %v", s.session0, boolStr(on), pct, idle, s.available(now))
	if len(s.failed) > 0 {
		t.Errorf("calls failed: %v\n%s", s.failed, logs.String())
	}
	if pct > 100 || (pct < 0 && pct != -1) {
		t.Errorf("battery %v %%", pct)
	}
	if s.session0 != (idle == -1) {
		t.Errorf("idle %v in session 0 = %v", idle, s.session0)
	}
}
