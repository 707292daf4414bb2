package owner

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMac stands in for pmset and ioreg.
type fakeMac struct {
	mu          sync.Mutex
	pmset       string
	ioreg       string
	pmsetErr    error
	ioregErr    error
	runs        map[string]int // finished runs by path
	started     map[string]int // started runs by path
	block       chan struct{}  // when not nil, runs wait for it
	logs        bytes.Buffer
	sensors     *cmdSensors
	inlineSpawn bool
}

func newFakeMac(t *testing.T, inline bool) *fakeMac {
	m := &fakeMac{runs: map[string]int{}, started: map[string]int{}}
	log := slog.New(slog.NewTextHandler(&m.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m.sensors = newCmdSensors(m.run, log)
	if inline {
		m.sensors.battery.spawn = func(f func()) { f() }
		m.sensors.idleFor.spawn = func(f func()) { f() }
	}
	return m
}

func (m *fakeMac) run(ctx context.Context, path string, args ...string) ([]byte, error) {
	m.mu.Lock()
	block := m.block
	m.started[path]++
	m.mu.Unlock()
	if block != nil {
		<-block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[path]++
	switch {
	case path == pmsetPath && slices.Equal(args, []string{"-g", "batt"}):
		return []byte(m.pmset), m.pmsetErr
	case path == ioregPath && slices.Equal(args, []string{"-c", "IOHIDSystem", "-d", "4"}):
		return []byte(m.ioreg), m.ioregErr
	}
	return nil, errors.New("unexpected command " + path + " " + strings.Join(args, " "))
}

func (m *fakeMac) set(f func(m *fakeMac)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func (m *fakeMac) count(path string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runs[path]
}

const pmsetOnBattery = "Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1)\t85%; discharging; 5:12 remaining present: true\n"

func TestCmdSensorsCacheAndIdleAdjust(t *testing.T) {
	m := newFakeMac(t, true)
	m.pmset, m.ioreg = pmsetOnBattery, ioregHID("10000000000") // idle 10 s
	s := m.sensors
	// 10 s of owner-loop reads, every 200 ms.
	for i := 0; i <= 50; i++ {
		now := t0.Add(time.Duration(i) * 200 * time.Millisecond)
		on, pct := s.power(now)
		if on == nil || !*on || pct != 85 {
			t.Fatalf("read %d: power %s, %v", i, boolStr(on), pct)
		}
		// Each ioreg run (every 2 s) says 10 s; in between the idle time
		// grows by the time since that run.
		want := 10*time.Second + time.Duration(i%10)*200*time.Millisecond
		if got := s.idle(now); got != want {
			t.Fatalf("read %d: idle %v, want %v", i, got, want)
		}
	}
	if n := m.count(pmsetPath); n != 3 { // at 0, 5 and 10 s
		t.Errorf("pmset ran %d times in 10 s, want 3", n)
	}
	if n := m.count(ioregPath); n != 6 { // at 0, 2, …, 10 s
		t.Errorf("ioreg ran %d times in 10 s, want 6", n)
	}
}

func TestCmdSensorsFailureIsUnknownAndLoggedOnce(t *testing.T) {
	m := newFakeMac(t, true)
	m.pmset, m.ioreg = pmsetOnBattery, ioregHID("5000000000")
	s := m.sensors
	if on, _ := s.power(t0); on == nil || s.idle(t0) != 5*time.Second {
		t.Fatal("no reading from working commands")
	}
	m.set(func(m *fakeMac) {
		m.pmsetErr = errors.New("signal: killed")
		m.ioregErr = context.DeadlineExceeded
	})
	for i := 1; i <= 10; i++ {
		now := t0.Add(time.Duration(i) * 5 * time.Second)
		if on, pct := s.power(now); on != nil || pct != -1 {
			t.Fatalf("power after a failure = %s, %v; want unknown", boolStr(on), pct)
		}
		if d := s.idle(now); d != -1 {
			t.Fatalf("idle after a failure = %v; want unknown", d)
		}
	}
	logs := m.logs.String()
	if strings.Count(logs, "level=DEBUG") != 2 || !strings.Contains(logs, "pmset") || !strings.Contains(logs, "ioreg") {
		t.Errorf("want one debug line per failing command, got:\n%s", logs)
	}
	// It comes back when the command does.
	m.set(func(m *fakeMac) { m.pmsetErr, m.ioregErr = nil, nil })
	now := t0.Add(time.Minute)
	if on, pct := s.power(now); on == nil || pct != 85 {
		t.Errorf("power after recovery = %s, %v", boolStr(on), pct)
	}
	if d := s.idle(now); d != 5*time.Second {
		t.Errorf("idle after recovery = %v", d)
	}
}

func TestCmdSensorsUnparsableIsUnknown(t *testing.T) {
	m := newFakeMac(t, true)
	m.pmset, m.ioreg = "garbage", "garbage"
	if on, pct := m.sensors.power(t0); on != nil || pct != -1 {
		t.Errorf("power = %s, %v; want unknown", boolStr(on), pct)
	}
	if d := m.sensors.idle(t0); d != -1 {
		t.Errorf("idle = %v; want unknown", d)
	}
	if got := m.sensors.available(t0); len(got) != 0 {
		t.Errorf("available = %v; want none", got)
	}
}

func TestCmdSensorsAvailable(t *testing.T) {
	for _, tc := range []struct {
		name, pmset, ioreg string
		want               []string
	}{
		{"MacBook", pmsetOnBattery, ioregHID("1"), []string{"battery", "ac", "idle"}},
		{"Mac mini", "Now drawing from 'AC Power'\n", ioregHID("1"), []string{"ac", "idle"}},
		{"nothing", "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMac(t, false) // available runs the commands itself
			m.pmset, m.ioreg = tc.pmset, tc.ioreg
			if got := m.sensors.available(t0); !slices.Equal(got, tc.want) {
				t.Errorf("available = %v, want %v", got, tc.want)
			}
			// The cache is warm: the first read neither waits nor runs again.
			m.sensors.power(t0)
			m.sensors.idle(t0)
			if m.count(pmsetPath) != 1 || m.count(ioregPath) != 1 {
				t.Errorf("runs = %v, want one of each", m.runs)
			}
		})
	}
}

// TestCmdSensorsNeverWait runs the refreshes in real goroutines (go test
// -race): a read while a command hangs returns the last value at once.
func TestCmdSensorsNeverWait(t *testing.T) {
	m := newFakeMac(t, false)
	m.pmset, m.ioreg = pmsetOnBattery, ioregHID("0")
	block := make(chan struct{})
	m.set(func(m *fakeMac) { m.block = block })
	started := func() (pmset, ioreg int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.started[pmsetPath], m.started[ioregPath]
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("timed out waiting for " + what)
			}
		}
	}
	start := time.Now()
	for i := range 20 {
		now := start.Add(time.Duration(i) * time.Second)
		if on, pct := m.sensors.power(now); on != nil || pct != -1 {
			t.Fatalf("power before the first run finished = %s, %v", boolStr(on), pct)
		}
		if d := m.sensors.idle(now); d != -1 {
			t.Fatalf("idle before the first run finished = %v", d)
		}
		if i == 0 {
			waitFor("the first runs", func() bool { p, i := started(); return p == 1 && i == 1 })
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("reads took %v while the commands hung", d)
	}
	if p, i := started(); p != 1 || i != 1 {
		t.Errorf("started %d pmset and %d ioreg runs while the first hung, want 1 each", p, i)
	}
	close(block)
	waitFor("a reading after the commands finished", func() bool {
		now := start.Add(time.Minute)
		on, _ := m.sensors.power(now)
		return on != nil && m.sensors.idle(now) >= 0
	})
}

func TestIdleSince(t *testing.T) {
	for _, tc := range []struct {
		name string
		idle time.Duration
		at   time.Time
		now  time.Time
		want time.Duration
	}{
		{"grows", 10 * time.Second, t0, t0.Add(time.Second), 11 * time.Second},
		{"unknown", -1, t0, t0.Add(time.Second), -1},
		{"no measurement", 5, time.Time{}, t0, -1},
		{"clock went back", 10 * time.Second, t0, t0.Add(-time.Hour), 10 * time.Second},
		{"saturates", maxDuration - 1, t0, t0.Add(time.Hour), maxDuration},
	} {
		if got := idleSince(tc.idle, tc.at, tc.now); got != tc.want {
			t.Errorf("%s: idleSince = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPowerIdleNames(t *testing.T) {
	for _, tc := range []struct {
		on   *bool
		pct  float64
		idle time.Duration
		want []string
	}{
		{ptr(true), 50, 0, []string{"battery", "ac", "idle"}},
		{ptr(false), -1, -1, []string{"ac"}},
		{nil, -1, time.Hour, []string{"idle"}},
		{nil, -1, -1, nil},
	} {
		if got := powerIdleNames(tc.on, tc.pct, tc.idle); !slices.Equal(got, tc.want) {
			t.Errorf("powerIdleNames(%s, %v, %v) = %v, want %v", boolStr(tc.on), tc.pct, tc.idle, got, tc.want)
		}
	}
}

// TestRunCommand runs real programs where there are some (not on Windows).
func TestRunCommand(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	out, err := runCommand(context.Background(), 5*time.Second, sh, "-c", "echo 'Now drawing from'")
	if err != nil || string(out) != "Now drawing from\n" {
		t.Errorf("runCommand = %q, %v", out, err)
	}
	if _, err := runCommand(context.Background(), 5*time.Second, sh, "-c", "exit 3"); err == nil {
		t.Error("a failing command gave no error")
	}
	if _, err := runCommand(context.Background(), 5*time.Second, "/nonexistent/pmset"); err == nil {
		t.Error("a missing command gave no error")
	}
	// A command that hangs is killed at the timeout, even when a
	// grandchild keeps its output open.
	start := time.Now()
	if _, err := runCommand(context.Background(), 200*time.Millisecond, sh, "-c", "sleep 30; true"); err == nil {
		t.Error("a hung command gave no error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a hung command took %v with a 200 ms timeout", d)
	}
}
