//go:build linux

package main

import (
	"testing"
	"time"
)

// TestCheckFlagsRefusesWhatWouldPanic: every -rate checkFlags lets through makes a ticker and a
// token channel without a panic, and the values that panicked in the middle of a run (after the
// approval and revocation figures, with two nodes up) are refused before anything starts.
func TestCheckFlagsRefusesWhatWouldPanic(t *testing.T) {
	for _, c := range []struct {
		keys, rate int
		secs       float64
		ok         bool
	}{
		{256, 1000, 10, true},
		{0, 1, 0, true},
		{1, 1_000_000, 1, true},
		{1, 0, 10, false},             // time.Second / 0
		{1, -5, 10, false},            // make(chan struct{}, -5)
		{1, 2_000_000_000, 10, false}, // a zero ticker interval
		{-1, 1000, 10, false},         // make([]host.Host, -1)
		{1, 1000, -1, false},
	} {
		err := checkFlags(c.keys, c.rate, c.secs)
		if (err == nil) != c.ok {
			t.Errorf("checkFlags(%d, %d, %g) = %v, want ok=%v", c.keys, c.rate, c.secs, err, c.ok)
		}
		if err == nil {
			tick := time.NewTicker(time.Second / time.Duration(c.rate))
			tick.Stop()
			_ = make(chan struct{}, c.rate)
			_ = make([]int, c.keys)
		}
	}
}
