package owner

import (
	"context"
	"log/slog"
	"os/exec"
	"sync"
	"time"
)

// The macOS battery and idle sensors run a command and parse its output
// (darwin_parse.go). This file has no build tag so that the caching and
// failure handling are tested on every OS with a fake command;
// sensors_darwin.go wires in the real one.

const (
	// pmsetPath and ioregPath are absolute so that PATH cannot substitute
	// another program.
	pmsetPath = "/usr/bin/pmset"
	ioregPath = "/usr/sbin/ioreg"
	// batteryEvery and idleEvery bound how often the commands run: the
	// owner loop reads the sensors every 200 ms, and a fork and exec of
	// pmset or ioreg five times a second would take CPU from the owner.
	batteryEvery = 5 * time.Second
	idleEvery    = 2 * time.Second
	// cmdTimeout bounds one run of a command.
	cmdTimeout = 2 * time.Second
)

// runFunc runs the program at path with args and returns its standard
// output.
type runFunc func(ctx context.Context, path string, args ...string) ([]byte, error)

// runCommand runs path with args and returns its standard output, killing
// it after timeout. WaitDelay keeps a child that left a grandchild holding
// the pipe from blocking the caller past the timeout.
func runCommand(ctx context.Context, timeout time.Duration, path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = timeout / 2
	return cmd.Output()
}

// polled is the last result of a slow probe (a command), refreshed in the
// background at most every `every`, so that a read never waits for it.
type polled[T any] struct {
	every   time.Duration
	unknown T                 // the value while there is no result, or after a failure
	probe   func() (T, error) // the slow part: run and parse a command
	spawn   func(func())      // runs a refresh; `go f()` except in tests
	log     func(err error)   // called for the first failure only
	mu      sync.Mutex        // guards the fields below, written by refreshes
	val     T                 // the last result, or unknown
	at      time.Time         // when the refresh that produced val started; zero before the first
	tried   time.Time         // when the last refresh started
	running bool              // a refresh is under way
	failed  bool              // a failure has been logged
}

// get returns the last result and when it was taken (zero when there is
// none yet), and starts a refresh in the background if the last one began
// at least p.every before now and none is running.
func (p *polled[T]) get(now time.Time) (T, time.Time) {
	p.mu.Lock()
	start := !p.running && (p.tried.IsZero() || now.Sub(p.tried) >= p.every)
	if start {
		p.running, p.tried = true, now
	}
	p.mu.Unlock()
	if start {
		p.spawn(func() {
			p.refresh(now)
			p.mu.Lock()
			p.running = false
			p.mu.Unlock()
		})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.val, p.at
}

// refresh runs the probe in the caller's goroutine and stores its result,
// taken at started, unless a newer one is already stored.
func (p *polled[T]) refresh(started time.Time) {
	v, err := p.probe()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		v = p.unknown
		if !p.failed {
			p.failed = true
			p.log(err)
		}
	}
	if !started.Before(p.at) {
		p.val, p.at = v, started
	}
	if started.After(p.tried) {
		p.tried = started
	}
}

// pmsetBatt is the parsed output of pmset.
type pmsetBatt struct {
	onBattery *bool
	pct       float64
}

// cmdSensors are the macOS battery and idle sensors: `pmset -g batt` and
// `ioreg -c IOHIDSystem -d 4`, run in the background at most every
// batteryEvery and idleEvery. A command that fails or times out makes its
// reading unknown until it next succeeds; the first failure of each is
// logged at debug level. Not safe for concurrent use (polled is).
type cmdSensors struct {
	battery polled[pmsetBatt]
	idleFor polled[time.Duration]
}

func newCmdSensors(run runFunc, log *slog.Logger) *cmdSensors {
	probe := func(path string, args ...string) func() (string, error) {
		return func() (string, error) {
			out, err := run(context.Background(), path, args...)
			return string(out), err
		}
	}
	pmset := probe(pmsetPath, "-g", "batt")
	ioreg := probe(ioregPath, "-c", "IOHIDSystem", "-d", "4")
	spawn := func(f func()) { go f() }
	s := &cmdSensors{}
	s.battery = polled[pmsetBatt]{
		every: batteryEvery, unknown: pmsetBatt{pct: -1}, spawn: spawn,
		probe: func() (pmsetBatt, error) {
			out, err := pmset()
			if err != nil {
				return pmsetBatt{}, err
			}
			on, pct := parsePmsetBatt(out)
			return pmsetBatt{on, pct}, nil
		},
		log: func(err error) { log.Debug("owner: battery: pmset", "err", err) },
	}
	s.battery.val = s.battery.unknown
	s.idleFor = polled[time.Duration]{
		every: idleEvery, unknown: -1, spawn: spawn,
		probe: func() (time.Duration, error) {
			out, err := ioreg()
			if err != nil {
				return -1, err
			}
			return parseHIDIdle(out), nil
		},
		log: func(err error) { log.Debug("owner: idle: ioreg", "err", err) },
	}
	s.idleFor.val = s.idleFor.unknown
	return s
}

// power implements powerIdleSensors.
func (s *cmdSensors) power(now time.Time) (onBattery *bool, pct float64) {
	b, _ := s.battery.get(now)
	return b.onBattery, b.pct
}

// idle implements powerIdleSensors: the idle time ioreg reported, plus the
// time since. Input after that run shows at the next one, at most
// idleEvery later (plus the run's own time).
func (s *cmdSensors) idle(now time.Time) time.Duration {
	d, at := s.idleFor.get(now)
	return idleSince(d, at, now)
}

// available implements powerIdleSensors: it runs both commands now, in
// this goroutine, so the answer is accurate and the cache is warm.
func (s *cmdSensors) available(now time.Time) []string {
	s.battery.refresh(now)
	s.idleFor.refresh(now)
	b, _ := s.battery.get(now)
	d, at := s.idleFor.get(now)
	return powerIdleNames(b.onBattery, b.pct, idleSince(d, at, now))
}
