package owner

import (
	"math"
	"testing"
	"time"
)

func TestDecodePowerStatus(t *testing.T) {
	for _, tc := range []struct {
		name                string
		acLine, flag, pctIn byte
		onBattery           *bool
		pct                 float64
	}{
		{"laptop unplugged", 0, 1, 85, ptr(true), 85},         // high
		{"laptop unplugged, low", 0, 2, 15, ptr(true), 15},    // low
		{"laptop unplugged, critical", 0, 4, 3, ptr(true), 3}, // critical
		{"laptop charging", 1, 8 | 1, 70, ptr(false), 70},     // charging + high
		{"laptop full on AC", 1, 1, 100, ptr(false), 100},     // high, not charging
		{"desktop, no battery", 1, 128, 255, ptr(false), -1},  // no system battery
		{"desktop, no battery, odd percent", 1, 128, 100, ptr(false), -1},
		{"AC offline but no battery", 0, 128, 255, nil, -1},             // nonsense: unknown
		{"AC offline, battery flag unknown", 0, 255, 40, ptr(true), 40}, // some battery runs it
		{"everything unknown", 255, 255, 255, nil, -1},
		{"AC unknown, charging", 255, 8, 50, ptr(false), 50},
		{"AC unknown, not charging", 255, 1, 50, nil, 50},
		{"AC unknown, flag unknown with the charging bit", 255, 255, 50, nil, 50},
		{"AC status out of range", 7, 1, 50, nil, 50},
		{"percent out of range", 0, 1, 101, ptr(true), -1},
		{"empty battery", 0, 4, 0, ptr(true), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			on, pct := decodePowerStatus(tc.acLine, tc.flag, tc.pctIn)
			if boolStr(on) != boolStr(tc.onBattery) || pct != tc.pct {
				t.Errorf("decodePowerStatus(%d, %d, %d) = %s, %v; want %s, %v",
					tc.acLine, tc.flag, tc.pctIn, boolStr(on), pct, boolStr(tc.onBattery), tc.pct)
			}
		})
	}
}

// TestDecodePowerStatusAll checks every input is in range.
func TestDecodePowerStatusAll(t *testing.T) {
	for ac := range 256 {
		for flag := range 256 {
			for p := range 256 {
				_, pct := decodePowerStatus(byte(ac), byte(flag), byte(p))
				if math.IsNaN(pct) || (pct != -1 && (pct < 0 || pct > 100)) {
					t.Fatalf("decodePowerStatus(%d, %d, %d): pct %v", ac, flag, p, pct)
				}
			}
		}
	}
}

func TestInputIdle(t *testing.T) {
	const ms = time.Millisecond
	var in inputIdle
	// GetTickCount 100 000, last input at 40 000: idle 60 s.
	if d := in.update(t0, 100_000, 40_000); d != 60*time.Second {
		t.Fatalf("idle = %v, want 60s", d)
	}
	// 10 s later, no new input.
	if d := in.update(t0.Add(10*time.Second), 110_000, 40_000); d != 70*time.Second {
		t.Fatalf("idle = %v, want 70s", d)
	}
	// New input.
	if d := in.update(t0.Add(11*time.Second), 111_000, 110_500); d != 500*ms {
		t.Fatalf("idle = %v, want 500ms", d)
	}
	// Across the tick wrap: input at 2³²−1000, now 2000 after the wrap.
	var w inputIdle
	if d := w.update(t0, 2000, math.MaxUint32-999); d != 3000*ms {
		t.Fatalf("idle across the wrap = %v, want 3s", d)
	}
	// Input stamped a tick after GetTickCount was read: just now.
	var a inputIdle
	if d := a.update(t0, 5000, 5016); d != 0 {
		t.Fatalf("idle with the input a tick ahead = %v, want 0", d)
	}
	// No input for 60 days: the 32-bit difference wraps (to ~10 days), but
	// the tracker keeps counting from when it first saw this input.
	var long inputIdle
	const day = 24 * time.Hour
	tick := uint32(1_000_000)
	last := tick - uint32(40*day/ms) // idle 40 days at the first read
	if d := long.update(t0, tick, last); d != 40*day {
		t.Fatalf("idle = %v, want 40 days", d)
	}
	later := t0.Add(20 * day)
	tick += uint32(20 * day / ms) // wraps past 2³²
	if d := long.update(later, tick, last); d != 60*day {
		t.Fatalf("idle after 60 days = %v, want 60 days (the raw difference says %v)",
			d, time.Duration(tick-last)*ms)
	}
}
