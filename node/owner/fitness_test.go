package owner

import (
	"math"
	"testing"
	"time"
)

func TestFitnessDebouncesBattery(t *testing.T) {
	f := &Fitness{PauseAfter: time.Second, ResumeAfter: time.Minute}
	now := t0
	run := Decision{State: StateRun, Throttle: 1}
	step := func(onBattery *bool, d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(200 * time.Millisecond) {
			f.Observe(Readings{OnBattery: onBattery}, run, now)
		}
		f.Observe(Readings{OnBattery: onBattery}, run, now)
	}
	if f.Power() != "" {
		t.Fatalf("power %q before any reading", f.Power())
	}
	step(ptr(false), 10*time.Second)
	if f.Power() != PowerMains {
		t.Fatalf("power %q on mains", f.Power())
	}
	if f.OnBattery() {
		t.Fatal("on battery while on mains")
	}
	// A plug wobbling faster than PauseAfter never counts.
	for range 20 {
		step(ptr(true), 600*time.Millisecond)
		step(ptr(false), 600*time.Millisecond)
		if f.OnBattery() {
			t.Fatal("a wobbling plug moved the vote")
		}
	}
	step(ptr(true), 1200*time.Millisecond)
	if !f.OnBattery() || f.Power() != PowerBattery {
		t.Fatal("not on battery after the reading held for PauseAfter")
	}
	step(ptr(false), 30*time.Second)
	if !f.OnBattery() {
		t.Fatal("back on mains before ResumeAfter")
	}
	step(nil, 31*time.Second) // unknown counts as mains
	if f.OnBattery() {
		t.Fatal("still on battery after ResumeAfter on mains")
	}
}

func TestFitnessPausedShare(t *testing.T) {
	f := &Fitness{Window: time.Hour}
	now := t0
	observe := func(state string, d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(time.Second) {
			f.Observe(Unknown(), Decision{State: state}, now)
		}
	}
	observe(StateRun, time.Hour)
	if f.Paused() != 0 {
		t.Fatalf("paused share %v while never paused", f.Paused())
	}
	observe(StatePaused, time.Hour)
	if want := 1 - math.Exp(-1); math.Abs(f.Paused()-want) > 0.01 {
		t.Fatalf("paused share after one window paused: %v, want ≈ %v", f.Paused(), want)
	}
	observe(StateThrottled, 5*time.Hour) // throttled still computes
	if f.Paused() > 0.01 {
		t.Fatalf("paused share %v after five windows computing", f.Paused())
	}
	// Time going backwards (a clock step) changes nothing, and the
	// average goes on from the new time.
	before := f.Paused()
	now = now.Add(-time.Hour)
	f.Observe(Unknown(), Decision{State: StatePaused}, now)
	if f.Paused() != before {
		t.Fatal("a clock step backwards moved the share")
	}
	observe(StatePaused, time.Minute)
	if f.Paused() <= before {
		t.Fatal("the share froze after a clock step backwards")
	}
}
