package owner

import (
	"fmt"
	"math"
	"time"
)

// States a Decision can report. They are the words the node shows in
// announcements, /api/v1/status and the UI (the node adds "working" and
// "idle" itself, from whether it holds a lease, when the state is StateRun).
const (
	StateRun       = "run"       // compute at full speed
	StateThrottled = "throttled" // compute at Decision.Throttle of full speed
	StatePaused    = "paused"    // compute nothing
)

// Reasons a Decision can give besides the ones with a measured value
// ("owner cpu 63 %", "battery 15 %", "cpu 82 °C").
const (
	ReasonSchedule    = "schedule"
	ReasonOnBattery   = "on battery"
	ReasonOwnerActive = "owner active"
)

// Values of Config.OnBattery.
const (
	OnBatteryPause = "pause"
	OnBatteryRun   = "run"
)

// Default values used by DefaultConfig and, for zero fields, by New.
const (
	DefaultPauseAfter  = time.Second
	DefaultResumeAfter = time.Minute
	DefaultMaxOwnerCPU = 0.25
	DefaultMinBattery  = 20
	DefaultTempSoft    = 80
	DefaultTempHard    = 90
	DefaultIdleAfter   = 3 * time.Minute
)

// AtOnce is the hysteresis that acts on the first reading (--pause-after 0,
// --resume-after 0): 0 in Config means the default, so the node passes
// this instead. A rule that fires pauses on the reading that shows it, and
// the first reading with every rule clear resumes; with any longer
// duration the rule must be seen holding that long, which takes a second
// reading (one owner-loop period, or ten seconds while the node has no
// chunk in hand).
const AtOnce = time.Nanosecond

// held reports whether a state seen since `since` has held long enough at
// now for a hysteresis of d (AtOnce or less: at once).
func held(since, now time.Time, d time.Duration) bool {
	return d <= AtOnce || now.Sub(since) >= d
}

// ThrottleDeadBand is the smallest change of Decision.Throttle that the
// policy passes on: a temperature wobbling a fraction of a degree around a
// point on the curve does not make the compute process change its duty cycle
// on every reading. Within the band the whole Decision holds: a throttled
// Decision's reason names the temperature at which its throttle was set.
const ThrottleDeadBand = 0.05

// ThrottleHold is the shortest time between two changes of the throttle (a
// change after it held this long, or after a pause, passes at once). CPU
// sensors read in whole degrees and jump a degree or more between readings,
// which is a tenth of the default curve: the dead band alone let a CPU
// hovering at 84–86 °C (or at the soft limit) change the Decision on nearly
// every 200 ms reading, each change logged, announced to every peer and sent
// to the compute process. The throttle only trims the duty cycle below the
// hard limit, whose rule pauses as before, so a slower throttle costs no
// safety.
const ThrottleHold = 10 * time.Second

// Readings are one sample of the sensors. Every field has an "unknown"
// value (negative, or nil for OnBattery); a rule whose reading is unknown
// never fires, so a sensor the OS lacks never blocks work.
type Readings struct {
	// OwnerCPU is the CPU used by everything except Hydra (the node and its
	// compute process) at normal priority, as a fraction of the whole
	// machine, 0–1; <0 unknown. Niced and idle-priority programs (BOINC,
	// another Hydra, a `nice make`) and hypervisor steal do not count: they
	// do not mean the owner is using the machine.
	OwnerCPU float64
	// OnBattery is true when the machine runs from its battery, false when
	// it is on external power, nil when unknown (or there is no battery).
	OnBattery *bool
	// BatteryPct is the charge of the system battery, 0–100; <0 unknown.
	BatteryPct float64
	// TempC is the hottest CPU/system temperature in °C; <0 unknown.
	TempC float64
	// IdleFor is the time since the owner's last keyboard or mouse input;
	// <0 unknown.
	IdleFor time.Duration
}

// Unknown returns Readings with every field unknown.
func Unknown() Readings {
	return Readings{OwnerCPU: -1, BatteryPct: -1, TempC: -1, IdleFor: -1}
}

// Config holds the owner rules. DefaultConfig suits a personal machine.
type Config struct {
	// PauseAfter is how long a rule must hold before the node pauses
	// (--pause-after). 0 in New means DefaultPauseAfter.
	PauseAfter time.Duration
	// ResumeAfter is the calm-down period: every rule must have been clear
	// this long before a paused node resumes (--resume-after). 0 in New
	// means DefaultResumeAfter.
	ResumeAfter time.Duration
	// MaxOwnerCPU pauses when other processes use more than this fraction
	// of the machine (--max-owner-cpu). 0 in New means DefaultMaxOwnerCPU;
	// 1 disables the rule.
	MaxOwnerCPU float64
	// OnBattery is OnBatteryPause or OnBatteryRun (--on-battery); "" in New
	// means OnBatteryPause.
	OnBattery string
	// MinBattery pauses when the battery charge is below this percentage
	// and the machine is not on external power; 0 disables the rule.
	MinBattery float64
	// TempSoft and TempHard (°C) bound the throttle curve: full speed at or
	// below TempSoft, linearly less up to TempHard, paused above TempHard
	// (--temp-soft, --temp-hard). 0 in New means the defaults.
	TempSoft, TempHard float64
	// IdleAfter pauses while the owner's last input is more recent than
	// this (--idle-after); 0 disables the rule.
	IdleAfter time.Duration
	// Schedule lists when compute is allowed (--schedule); the zero
	// Schedule always allows it.
	Schedule Schedule
	// Dedicated ignores the owner rules — owner CPU, user input, battery —
	// for a machine that is there to compute (--dedicated). The schedule
	// and the temperature limits, which protect the hardware, still apply.
	Dedicated bool
}

// DefaultConfig returns the defaults for a personal machine.
func DefaultConfig() Config {
	return Config{
		PauseAfter:  DefaultPauseAfter,
		ResumeAfter: DefaultResumeAfter,
		MaxOwnerCPU: DefaultMaxOwnerCPU,
		OnBattery:   OnBatteryPause,
		MinBattery:  DefaultMinBattery,
		TempSoft:    DefaultTempSoft,
		TempHard:    DefaultTempHard,
		IdleAfter:   DefaultIdleAfter,
	}
}

// withDefaults fills the zero fields whose zero value means "default".
func (c Config) withDefaults() Config {
	if c.PauseAfter == 0 {
		c.PauseAfter = DefaultPauseAfter
	}
	if c.ResumeAfter == 0 {
		c.ResumeAfter = DefaultResumeAfter
	}
	if c.MaxOwnerCPU == 0 {
		c.MaxOwnerCPU = DefaultMaxOwnerCPU
	}
	if c.OnBattery == "" {
		c.OnBattery = OnBatteryPause
	}
	if c.TempSoft == 0 && c.TempHard == 0 {
		c.TempSoft, c.TempHard = DefaultTempSoft, DefaultTempHard
	}
	return c
}

// maxTemp bounds the temperatures of the heat rule: no CPU runs above it, so a higher (or
// infinite) limit would only switch the rule off without saying so.
const maxTemp = 150

// Validate reports the first field of c (after defaults) that makes no sense.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.PauseAfter < 0:
		return fmt.Errorf("owner: pause-after %v is negative", c.PauseAfter)
	case c.ResumeAfter < 0:
		return fmt.Errorf("owner: resume-after %v is negative", c.ResumeAfter)
	case !(c.MaxOwnerCPU >= 0 && c.MaxOwnerCPU <= 1): // NaN too: every comparison with it is false
		return fmt.Errorf("owner: max-owner-cpu %v is outside 0–1", c.MaxOwnerCPU)
	case c.OnBattery != OnBatteryPause && c.OnBattery != OnBatteryRun:
		return fmt.Errorf("owner: on-battery %q: want %q or %q", c.OnBattery, OnBatteryPause, OnBatteryRun)
	case !(c.MinBattery >= 0 && c.MinBattery <= 100):
		return fmt.Errorf("owner: min-battery %v is outside 0–100", c.MinBattery)
	case !(c.TempSoft > 0 && c.TempHard > c.TempSoft && c.TempHard <= maxTemp): // NaN and +Inf too
		return fmt.Errorf("owner: temperatures soft %v °C, hard %v °C: want 0 < soft < hard ≤ %v", c.TempSoft, c.TempHard, maxTemp)
	case c.IdleAfter < 0:
		return fmt.Errorf("owner: idle-after %v is negative", c.IdleAfter)
	}
	return nil
}

// Decision is what the node should do now.
type Decision struct {
	// State is StateRun, StateThrottled or StatePaused.
	State string
	// Reason says why the node is not at StateRun ("on battery",
	// "owner active", "cpu 82 °C", "schedule", "owner cpu 63 %",
	// "battery 15 %"); "" at StateRun. While a paused node calms down it
	// keeps the reason of the last rule that held.
	Reason string
	// Throttle is the share of CPU compute may use, 0–1: 1 at StateRun,
	// 0 at StatePaused, in between at StateThrottled.
	Throttle float64
}

// String renders d the way the UI shows it: "run", "throttled: cpu 82 °C".
func (d Decision) String() string {
	if d.Reason == "" {
		return d.State
	}
	return d.State + ": " + d.Reason
}

// Policy turns sensor readings into Decisions with hysteresis: it pauses
// when a rule has held for Config.PauseAfter and resumes only after every
// rule has been clear for Config.ResumeAfter, so a signal that wobbles
// around a threshold causes at most one pause and one resume per calm-down
// period. Policy never reads the clock; time comes in as Decide's argument.
// It is not safe for concurrent use.
type Policy struct {
	cfg Config

	paused     bool
	reason     string    // last rule that held (the reason while paused)
	firedSince time.Time // start of the current unbroken run of a firing rule; zero if none fires
	clearSince time.Time // start of the current unbroken run with no rule firing; zero if one fires
	throttle   float64   // last throttle passed on (dead band)
	throttleAt time.Time // when it changed last (ThrottleHold); zero before the first change
	// throttleReason is the reason given with throttle: the temperature at
	// which it was passed on, so that the Decision holds, reason and all,
	// while the throttle does (the node re-applies any change of it).
	throttleReason string
}

// New returns a Policy for cfg, with defaults for its zero fields (see
// Config), or the error of cfg.Validate.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Policy{cfg: cfg.withDefaults(), throttle: 1}, nil
}

// Config returns the policy's configuration with defaults filled in.
func (p *Policy) Config() Config { return p.cfg }

// Paused reports whether the last Decision paused.
func (p *Policy) Paused() bool { return p.paused }

// Decide returns the Decision for readings r taken at now. Calls must come
// with non-decreasing now; the hysteresis measures how long rules held
// between them.
func (p *Policy) Decide(r Readings, now time.Time) Decision {
	reason, fires := p.firing(r, now)
	if fires {
		p.reason = reason
		p.clearSince = time.Time{}
		if p.firedSince.IsZero() {
			p.firedSince = now
		}
		if !p.paused && held(p.firedSince, now, p.cfg.PauseAfter) {
			p.paused = true
		}
	} else {
		p.firedSince = time.Time{}
		if p.clearSince.IsZero() {
			p.clearSince = now
		}
		if p.paused && held(p.clearSince, now, p.cfg.ResumeAfter) {
			p.paused = false
		}
	}
	if p.paused {
		p.throttle = 0
		return Decision{State: StatePaused, Reason: p.reason, Throttle: 0}
	}

	t := p.cfg.throttleAt(r.TempC)
	moved := t != p.throttle && (t == 1 || math.Abs(t-p.throttle) >= ThrottleDeadBand)
	if p.throttle == 0 || moved && (p.throttleAt.IsZero() || now.Sub(p.throttleAt) >= ThrottleHold) {
		if t != p.throttle {
			p.throttleAt = now
		}
		p.throttle, p.throttleReason = t, tempReason(r.TempC)
	}
	if p.throttle >= 1 {
		return Decision{State: StateRun, Throttle: 1}
	}
	return Decision{State: StateThrottled, Reason: p.throttleReason, Throttle: p.throttle}
}

// firing returns the reason of the most important rule that fires for r,
// if any. Order: schedule, battery, temperature, owner input, owner CPU.
func (p *Policy) firing(r Readings, now time.Time) (string, bool) {
	c := &p.cfg
	if !c.Schedule.Allowed(now) {
		return ReasonSchedule, true
	}
	if !c.Dedicated {
		if r.OnBattery != nil && *r.OnBattery && c.OnBattery == OnBatteryPause {
			return ReasonOnBattery, true
		}
		onMains := r.OnBattery != nil && !*r.OnBattery
		if c.MinBattery > 0 && r.BatteryPct >= 0 && r.BatteryPct < c.MinBattery && !onMains {
			return fmt.Sprintf("battery %.0f %%", r.BatteryPct), true
		}
	}
	if r.TempC >= 0 && r.TempC > c.TempHard {
		return tempReason(r.TempC), true
	}
	if !c.Dedicated {
		if c.IdleAfter > 0 && r.IdleFor >= 0 && r.IdleFor < c.IdleAfter {
			return ReasonOwnerActive, true
		}
		if r.OwnerCPU >= 0 && r.OwnerCPU > c.MaxOwnerCPU {
			return fmt.Sprintf("owner cpu %.0f %%", r.OwnerCPU*100), true
		}
	}
	return "", false
}

// throttleAt is the throttle curve: 1 at or below TempSoft (or unknown),
// falling linearly to 0 at TempHard.
func (c *Config) throttleAt(tempC float64) float64 {
	if tempC < 0 || tempC <= c.TempSoft {
		return 1
	}
	if tempC >= c.TempHard {
		return 0
	}
	return (c.TempHard - tempC) / (c.TempHard - c.TempSoft)
}

func tempReason(tempC float64) string { return fmt.Sprintf("cpu %.0f °C", tempC) }

// Throttle returns the throttle curve of cfg (with defaults) at tempC,
// without dead band or hysteresis: 1 at or below TempSoft or when tempC is
// unknown, linear down to 0 at TempHard.
func Throttle(cfg Config, tempC float64) float64 {
	cfg = cfg.withDefaults()
	return cfg.throttleAt(tempC)
}
