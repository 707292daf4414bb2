package owner

import (
	"context"
	"testing"
	"time"
)

// TestDarwinCommandsRealMachine runs the real pmset and ioreg: both exist
// on every Mac and must succeed; what they report depends on the machine
// (a CI VM may have no battery), so it is logged, and only checked for
// being in range.
func TestDarwinCommandsRealMachine(t *testing.T) {
	for _, c := range [][]string{{pmsetPath, "-g", "batt"}, {ioregPath, "-c", "IOHIDSystem", "-d", "4"}} {
		start := time.Now()
		out, err := runCommand(context.Background(), cmdTimeout, c[0], c[1:]...)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		t.Logf("%v took %v", c, time.Since(start))
		switch c[0] {
		case pmsetPath:
			on, pct := parsePmsetBatt(string(out))
			t.Logf("pmset: on battery %s, %v %%", boolStr(on), pct)
			if on == nil {
				t.Errorf("pmset gave no power source:\n%s", out)
			}
		case ioregPath:
			d := parseHIDIdle(string(out))
			t.Logf("ioreg: idle %v", d)
		}
	}
	s := NewSensors(SensorConfig{})
	t.Logf("available %v", s.Available())
	if r := s.Read(time.Now()); r.IdleFor < -1 || r.BatteryPct > 100 {
		t.Errorf("implausible readings %+v", r)
	}
}
