package owner

import (
	"math"
	"strings"
	"testing"
	"time"
)

// t0 is a Wednesday noon, inside no schedule's edge.
var t0 = time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)

func ptr(b bool) *bool { return &b }

func mustNew(t *testing.T, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clock is a fake clock stepping a Policy through readings.
type clock struct {
	p           *Policy
	now         time.Time
	transitions int
	last        Decision
}

func newClock(p *Policy) *clock { return &clock{p: p, now: t0, last: Decision{State: StateRun}} }

// run feeds r every step for d and returns the last Decision.
func (c *clock) run(r Readings, d, step time.Duration) Decision {
	end := c.now.Add(d)
	for ; !c.now.After(end); c.now = c.now.Add(step) {
		c.decide(r)
	}
	return c.last
}

func (c *clock) decide(r Readings) Decision {
	d := c.p.Decide(r, c.now)
	if (d.State == StatePaused) != (c.last.State == StatePaused) {
		c.transitions++
	}
	c.last = d
	return d
}

func TestRulesPauseAfterHoldingAndResumeAfterCalm(t *testing.T) {
	quiet := Unknown()
	quiet.OwnerCPU, quiet.OnBattery, quiet.BatteryPct, quiet.TempC, quiet.IdleFor = 0.05, ptr(false), 90, 50, time.Hour
	with := func(f func(*Readings)) Readings { r := quiet; f(&r); return r }
	cases := []struct {
		name   string
		r      Readings
		reason string
	}{
		{"owner cpu", with(func(r *Readings) { r.OwnerCPU = 0.63 }), "owner cpu 63 %"},
		{"on battery", with(func(r *Readings) { r.OnBattery = ptr(true) }), "on battery"},
		{"battery low", with(func(r *Readings) { r.OnBattery = nil; r.BatteryPct = 15 }), "battery 15 %"},
		{"too hot", with(func(r *Readings) { r.TempC = 93 }), "cpu 93 °C"},
		{"owner active", with(func(r *Readings) { r.IdleFor = 10 * time.Second }), "owner active"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(mustNew(t, DefaultConfig()))
			if d := c.run(quiet, 5*time.Second, 100*time.Millisecond); d.State != StateRun || d.Throttle != 1 {
				t.Fatalf("quiet: %+v", d)
			}
			// Holding for less than PauseAfter does not pause.
			if d := c.run(tc.r, 900*time.Millisecond, 100*time.Millisecond); d.State == StatePaused {
				t.Fatalf("paused after 0.9 s: %+v", d)
			}
			c.now = c.now.Add(100 * time.Millisecond)
			d := c.decide(tc.r)
			if d.State != StatePaused || d.Reason != tc.reason || d.Throttle != 0 {
				t.Fatalf("after 1 s: %+v, want paused: %s", d, tc.reason)
			}
			// Clear for just under ResumeAfter: still paused, with the reason.
			d = c.run(quiet, 59*time.Second, time.Second)
			if d.State != StatePaused || d.Reason != tc.reason {
				t.Fatalf("after 59 s calm: %+v", d)
			}
			c.now = c.now.Add(time.Second)
			if d = c.decide(quiet); d.State != StateRun || d.Reason != "" || d.Throttle != 1 {
				t.Fatalf("after 60 s calm: %+v", d)
			}
		})
	}
}

func TestBatteryRules(t *testing.T) {
	cfg := DefaultConfig()
	cfg.OnBattery = OnBatteryRun
	c := newClock(mustNew(t, cfg))
	r := Unknown()
	r.OnBattery, r.BatteryPct = ptr(true), 50
	if d := c.run(r, 10*time.Second, time.Second); d.State != StateRun {
		t.Fatalf("on-battery run at 50 %%: %+v", d)
	}
	r.BatteryPct = 19
	if d := c.run(r, 2*time.Second, time.Second); d.State != StatePaused || d.Reason != "battery 19 %" {
		t.Fatalf("on-battery run at 19 %%: %+v", d)
	}
	// Low but charging: external power wins.
	c = newClock(mustNew(t, cfg))
	r.OnBattery = ptr(false)
	if d := c.run(r, 10*time.Second, time.Second); d.State != StateRun {
		t.Fatalf("charging at 19 %%: %+v", d)
	}
}

func TestScheduleRule(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Schedule = MustParseSchedule("mon-fri 18:00-08:00,sat-sun")
	c := newClock(mustNew(t, cfg)) // Wednesday noon: outside.
	if d := c.run(Unknown(), 2*time.Second, time.Second); d.State != StatePaused || d.Reason != ReasonSchedule {
		t.Fatalf("wednesday noon: %+v", d)
	}
	c.now = time.Date(2026, 3, 4, 18, 0, 0, 0, time.UTC)
	if d := c.run(Unknown(), 59*time.Second, time.Second); d.State != StatePaused {
		t.Fatalf("calming down: %+v", d)
	}
	if d := c.run(Unknown(), 2*time.Second, time.Second); d.State != StateRun {
		t.Fatalf("wednesday 18:01: %+v", d)
	}
	// Dedicated still honours the schedule.
	cfg.Dedicated = true
	c = newClock(mustNew(t, cfg))
	if d := c.run(Unknown(), 2*time.Second, time.Second); d.State != StatePaused {
		t.Fatalf("dedicated, wednesday noon: %+v", d)
	}
}

func TestDedicatedIgnoresOwnerRules(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dedicated = true
	c := newClock(mustNew(t, cfg))
	r := Readings{OwnerCPU: 0.99, OnBattery: ptr(true), BatteryPct: 3, TempC: 40, IdleFor: 0}
	if d := c.run(r, 5*time.Minute, time.Second); d.State != StateRun || c.transitions != 0 {
		t.Fatalf("dedicated: %+v, %d transitions", d, c.transitions)
	}
	// Temperature still applies.
	r.TempC = 85
	if d := c.decide(r); d.State != StateThrottled || d.Throttle != 0.5 {
		t.Fatalf("dedicated at 85 °C: %+v", d)
	}
	r.TempC = 95
	if d := c.run(r, 2*time.Second, time.Second); d.State != StatePaused || d.Reason != "cpu 95 °C" {
		t.Fatalf("dedicated at 95 °C: %+v", d)
	}
}

func TestUnknownReadingsNeverBlock(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MinBattery = 50
	c := newClock(mustNew(t, cfg))
	if d := c.run(Unknown(), 10*time.Minute, time.Second); d.State != StateRun || d.Throttle != 1 || c.transitions != 0 {
		t.Fatalf("unknown: %+v, %d transitions", d, c.transitions)
	}
	// A zero Readings is not "unknown" for IdleFor (0 = input just now);
	// the sensors always fill unknowns explicitly.
	if r := Unknown(); r.OnBattery != nil || r.OwnerCPU >= 0 || r.BatteryPct >= 0 || r.TempC >= 0 || r.IdleFor >= 0 {
		t.Fatalf("Unknown() = %+v", r)
	}
}

func TestIdleAfterZeroDisables(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IdleAfter = 0
	c := newClock(mustNew(t, cfg))
	r := Unknown()
	r.IdleFor = 0
	if d := c.run(r, time.Minute, time.Second); d.State != StateRun {
		t.Fatalf("idle-after 0: %+v", d)
	}
}

func TestThrottleCurve(t *testing.T) {
	cfg := DefaultConfig() // 80 / 90 °C
	for _, tc := range []struct{ temp, want float64 }{
		{-1, 1}, {20, 1}, {80, 1}, {81, 0.9}, {82.5, 0.75}, {85, 0.5}, {89, 0.1}, {90, 0}, {120, 0},
	} {
		if got := Throttle(cfg, tc.temp); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Throttle(%v °C) = %v, want %v", tc.temp, got, tc.want)
		}
	}
	p := mustNew(t, cfg)
	r := Unknown()
	r.TempC = 82
	if d := p.Decide(r, t0); d.State != StateThrottled || math.Abs(d.Throttle-0.8) > 1e-9 || d.Reason != "cpu 82 °C" {
		t.Fatalf("82 °C: %+v", d)
	}
}

func TestThrottleDeadBand(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	r := Unknown()
	changes, last := 0, 1.0
	now := t0
	// Wobble ±0.2 °C around 85 °C: the throttle moves once (to 0.5), then holds.
	for i := range 1000 {
		r.TempC = 85 + 0.2*float64(i%2*2-1)
		d := p.Decide(r, now)
		if d.Throttle != last {
			changes++
			last = d.Throttle
		}
		now = now.Add(100 * time.Millisecond)
	}
	if changes != 1 {
		t.Fatalf("throttle changed %d times under a ±0.2 °C wobble, want 1", changes)
	}
	// Wobble around the soft limit: stays at full speed.
	p = mustNew(t, DefaultConfig())
	for i := range 100 {
		r.TempC = 80 + 0.3*float64(i%2*2-1)
		if d := p.Decide(r, now); d.Throttle != 1 || d.State != StateRun {
			t.Fatalf("around soft limit: %+v", d)
		}
		now = now.Add(100 * time.Millisecond)
	}
	// A real drop below the soft limit restores full speed once the throttle held ThrottleHold.
	p = mustNew(t, DefaultConfig())
	r.TempC = 80.4
	p.Decide(r, now)
	r.TempC = 82
	if d := p.Decide(r, now); d.State != StateThrottled {
		t.Fatalf("at 82 °C: %+v", d)
	}
	r.TempC = 79
	if d := p.Decide(r, now.Add(ThrottleHold-time.Millisecond)); d.State != StateThrottled {
		t.Fatalf("back below soft within ThrottleHold: %+v", d)
	}
	if d := p.Decide(r, now.Add(ThrottleHold)); d.Throttle != 1 || d.State != StateRun {
		t.Fatalf("back below soft: %+v", d)
	}
}

// TestThrottleHoldsUnderSensorNoise: CPU sensors read in whole degrees and jump a degree or two
// between readings. With the dead band alone (half a degree on the default curve) a CPU at
// 84–86 °C, or at the soft limit, changed the Decision on nearly every 200 ms reading (about 200
// a minute), and the node logs, announces to every peer and retunes the compute process on each
// change. The throttle changes at most once per ThrottleHold; the first slow-down is at once.
func TestThrottleHoldsUnderSensorNoise(t *testing.T) {
	for _, around := range []float64{85, 80} {
		p := mustNew(t, DefaultConfig())
		r := Unknown()
		now := t0
		last := Decision{State: StateRun, Throttle: 1}
		changes := 0
		const span = 10 * time.Minute
		for i := range int(span / ownerStep) {
			r.TempC = around + float64(i*7%3-1) // whole degrees: around-1, around, around+1
			d := p.Decide(r, now)
			if i == 0 && around == 85 && d.State != StateThrottled {
				t.Fatalf("first reading at %v °C: %+v, want throttled at once", r.TempC, d)
			}
			if d != last {
				changes++
				last = d
			}
			now = now.Add(ownerStep)
		}
		if limit := int(span/ThrottleHold) + 1; changes > limit {
			t.Errorf("around %v °C: the decision changed %d times in %v, want at most %d", around, changes, span, limit)
		}
	}
}

// ownerStep is the node's reading interval while it computes.
const ownerStep = 200 * time.Millisecond

// TestNoFlapping drives each rule with signals that oscillate around its
// threshold for ten simulated minutes and checks that there is at most one
// pause and one resume per calm-down period.
func TestNoFlapping(t *testing.T) {
	cfg := DefaultConfig()
	period := 10 * time.Minute
	maxTransitions := 2 * (int(period/cfg.ResumeAfter) + 1)
	type signal struct {
		name     string
		high, lo Readings
		highFor  time.Duration
		loFor    time.Duration
	}
	base := Unknown()
	cpu := func(v float64) Readings { r := base; r.OwnerCPU = v; return r }
	temp := func(v float64) Readings { r := base; r.TempC = v; return r }
	batt := func(v bool) Readings { r := base; r.OnBattery = ptr(v); return r }
	var signals []signal
	for _, duty := range [][2]time.Duration{
		{700 * time.Millisecond, 700 * time.Millisecond},
		{1500 * time.Millisecond, 700 * time.Millisecond},
		{700 * time.Millisecond, 30 * time.Second},
		{3 * time.Second, 50 * time.Second},
		{2 * time.Second, 61 * time.Second},
	} {
		signals = append(signals,
			signal{"owner cpu", cpu(0.26), cpu(0.24), duty[0], duty[1]},
			signal{"temperature", temp(90.5), temp(89.5), duty[0], duty[1]},
			signal{"battery", batt(true), batt(false), duty[0], duty[1]},
		)
	}
	for _, s := range signals {
		c := newClock(mustNew(t, cfg))
		end := t0.Add(period)
		pauses := 0
		for c.now.Before(end) {
			for _, phase := range []struct {
				r Readings
				d time.Duration
			}{{s.high, s.highFor}, {s.lo, s.loFor}} {
				phaseEnd := c.now.Add(phase.d)
				for ; c.now.Before(phaseEnd) && c.now.Before(end); c.now = c.now.Add(100 * time.Millisecond) {
					before := c.last.State
					if d := c.decide(phase.r); d.State == StatePaused && before != StatePaused {
						pauses++
					}
				}
			}
		}
		if c.transitions > maxTransitions {
			t.Errorf("%s %v on / %v off: %d transitions in %v, want ≤ %d", s.name, s.highFor, s.loFor, c.transitions, period, maxTransitions)
		}
		// Signals that hold longer than PauseAfter but never calm down for
		// ResumeAfter pause exactly once and stay paused.
		if s.highFor > cfg.PauseAfter && s.loFor < cfg.ResumeAfter && (pauses != 1 || c.last.State != StatePaused) {
			t.Errorf("%s %v on / %v off: %d pauses, last %v; want one pause, still paused", s.name, s.highFor, s.loFor, pauses, c.last)
		}
		// Signals that never hold for PauseAfter never pause.
		if s.highFor < cfg.PauseAfter && pauses != 0 {
			t.Errorf("%s %v on / %v off: %d pauses, want 0", s.name, s.highFor, s.loFor, pauses)
		}
		t.Logf("%-11s %6v on / %6v off: %d pauses, %d transitions", s.name, s.highFor, s.loFor, pauses, c.transitions)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	p := mustNew(t, Config{})
	if got := p.Config(); got.PauseAfter != time.Second || got.ResumeAfter != time.Minute || got.MaxOwnerCPU != 0.25 ||
		got.OnBattery != OnBatteryPause || got.TempSoft != 80 || got.TempHard != 90 {
		t.Fatalf("defaults: %+v", got)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{OnBattery: "maybe"}, "on-battery"},
		{Config{TempSoft: 90, TempHard: 80}, "soft"},
		{Config{MaxOwnerCPU: 1.5}, "max-owner-cpu"},
		{Config{MinBattery: 120}, "min-battery"},
		{Config{PauseAfter: -time.Second}, "pause-after"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestDecisionString(t *testing.T) {
	if s := (Decision{State: StatePaused, Reason: "on battery"}).String(); s != "paused: on battery" {
		t.Fatal(s)
	}
	if s := (Decision{State: StateRun, Throttle: 1}).String(); s != "run" {
		t.Fatal(s)
	}
}

// TestThrottleDeadBandHoldsTheDecision: the node re-applies a Decision
// (logs it, retunes the compute process, announces at once) whenever any
// field of it changes, the reason too. Within the dead band the throttle
// held, but the reason followed every reading ("cpu 84 °C", "cpu 85 °C"),
// so a temperature wobbling ±0.2 °C around 84.5 °C changed the Decision on
// every reading all the same. The whole Decision holds.
func TestThrottleDeadBandHoldsTheDecision(t *testing.T) {
	p := mustNew(t, DefaultConfig())
	r := Unknown()
	now := t0
	var last Decision
	changes := 0
	for i := range 100 {
		r.TempC = 84.5 + 0.2*float64(i%2*2-1)
		if d := p.Decide(r, now); d != last {
			changes++
			last = d
		}
		now = now.Add(100 * time.Millisecond)
	}
	if changes != 1 {
		t.Fatalf("decision changed %d times under a ±0.2 °C wobble, want 1 (last %+v)", changes, last)
	}
	if last.State != StateThrottled || !strings.HasPrefix(last.Reason, "cpu 8") {
		t.Fatalf("decision %+v, want throttled by the temperature", last)
	}
}

// TestAtOnceActsOnTheFirstReading: --pause-after 0 and --resume-after 0 (AtOnce: 0 in Config is
// the default) pause on the first reading a rule fires and resume on the first reading with
// every rule clear, and the vote's battery debounce follows on the first reading too. They took
// a second reading each, for a pause one owner-loop period late and for a resume, with a paused
// node holding no chunk and so reading every 10 s, up to 20 s after the owner left.
func TestAtOnceActsOnTheFirstReading(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PauseAfter, cfg.ResumeAfter = AtOnce, AtOnce
	p := mustNew(t, cfg)
	quiet, busy := Unknown(), Unknown()
	quiet.OwnerCPU, busy.OwnerCPU = 0.05, 0.9
	if d := p.Decide(quiet, t0); d.State != StateRun {
		t.Fatalf("quiet: %+v", d)
	}
	if d := p.Decide(busy, t0.Add(10*time.Second)); d.State != StatePaused || d.Reason != "owner cpu 90 %" {
		t.Fatalf("first busy reading: %+v, want paused", d)
	}
	if d := p.Decide(quiet, t0.Add(20*time.Second)); d.State != StateRun {
		t.Fatalf("first quiet reading: %+v, want run", d)
	}
	f := &Fitness{PauseAfter: AtOnce, ResumeAfter: AtOnce}
	run := Decision{State: StateRun, Throttle: 1}
	f.Observe(Readings{OnBattery: ptr(false)}, run, t0)
	if f.Observe(Readings{OnBattery: ptr(true)}, run, t0.Add(time.Second)); !f.OnBattery() {
		t.Fatal("fitness: not on battery at the first battery reading")
	}
	if f.Observe(Readings{OnBattery: ptr(false)}, run, t0.Add(2*time.Second)); f.OnBattery() {
		t.Fatal("fitness: still on battery at the first mains reading")
	}
}
