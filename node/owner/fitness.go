package owner

import (
	"math"
	"time"
)

// DefaultFitnessWindow is the time constant of Fitness's paused share: the
// last hour or so counts, older behaviour fades out.
const DefaultFitnessWindow = time.Hour

// Fitness summarises how fit this machine is to hold a raft vote, for
// --voter auto: whether it runs from its battery (a laptop that may sleep
// or die at any moment) and how much of the recent time the owner policy
// kept compute paused (an owner who keeps the machine busy is also likely
// to close or suspend it). The node reports both to the leader, whose
// promoter moves votes to mains-powered, rarely paused machines.
//
// The battery reading is debounced like the policy's rules, so a loose plug
// does not move votes back and forth: Fitness says "on battery" once the
// sensor has said so for PauseAfter, and "on mains" again once it has said
// that (or nothing) for ResumeAfter. It is a pure function of its inputs and
// the time passed in; it is not safe for concurrent use.
type Fitness struct {
	// PauseAfter and ResumeAfter debounce the battery reading (the owner
	// policy's --pause-after and --resume-after).
	PauseAfter, ResumeAfter time.Duration
	// Window is the time constant of the paused share's exponential
	// average; 0 means DefaultFitnessWindow.
	Window time.Duration

	onBattery bool      // debounced
	powerSeen bool      // a reading ever said battery or mains
	raw       bool      // the last reading (unknown counts as mains)
	rawSince  time.Time // when raw last changed
	paused    float64   // exponential average of "compute paused", 0–1
	last      time.Time // time of the last Observe; zero before the first
}

// Observe takes one sensor reading and the policy's decision at now.
func (f *Fitness) Observe(r Readings, d Decision, now time.Time) {
	raw := r.OnBattery != nil && *r.OnBattery
	f.powerSeen = f.powerSeen || r.OnBattery != nil
	if f.last.IsZero() {
		f.raw, f.rawSince, f.last = raw, now, now
	}
	if now.Before(f.last) { // the clock stepped back: start the intervals afresh
		f.last = now
		if f.rawSince.After(now) {
			f.rawSince = now
		}
	}
	if raw != f.raw {
		f.raw, f.rawSince = raw, now
	}
	switch {
	case raw && !f.onBattery && held(f.rawSince, now, f.PauseAfter):
		f.onBattery = true
	case !raw && f.onBattery && held(f.rawSince, now, f.ResumeAfter):
		f.onBattery = false
	}
	if dt := now.Sub(f.last); dt > 0 {
		w := f.Window
		if w <= 0 {
			w = DefaultFitnessWindow
		}
		x := 0.0
		if d.State == StatePaused {
			x = 1
		}
		alpha := 1 - math.Exp(-float64(dt)/float64(w))
		f.paused += alpha * (x - f.paused)
		f.last = now
	}
}

// OnBattery reports the debounced battery state.
func (f *Fitness) OnBattery() bool { return f.onBattery }

// Power values, as shown in status and announcements.
const (
	PowerBattery = "battery"
	PowerMains   = "mains"
)

// Power returns PowerBattery or PowerMains (debounced like OnBattery), or ""
// when no sensor ever told: a desktop without power-supply information.
func (f *Fitness) Power() string {
	switch {
	case f.onBattery:
		return PowerBattery
	case f.powerSeen:
		return PowerMains
	}
	return ""
}

// Paused returns the recent share of time compute was paused, 0–1.
func (f *Fitness) Paused() float64 { return min(max(f.paused, 0), 1) }
