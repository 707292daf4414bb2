//go:build linux

package main

// -flaps: pause/resume transitions of a node whose owner's load oscillates around the owner
// policy's CPU threshold.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// transition is a change of the node's state between paused and not paused, as polled.
type transition struct {
	at     time.Duration // since the load started
	paused bool
	state  string
	reason string
}

func benchFlaps(ctx context.Context, bin, work string) error {
	dur := time.Duration(*flagMins * float64(time.Minute))
	args := append([]string{"--idle-after", "0", "--on-battery", "run", "--max-owner-cpu", fmt.Sprint(*flagMaxCPU),
		"--pause-after", flagPause.String(), "--resume-after", flagResume.String()}, nodeArgs()...)
	n, err := newNode(bin, filepath.Join(work, "node"), args...)
	if err != nil {
		return err
	}
	fmt.Printf("flaps: node %s\n", strings.Join(args, " "))
	fmt.Printf("owner load: %d processes, square wave %g %% / %g %% of the machine (average %g %%), period %v; watched %v, status polled every 200 ms\n",
		runtime.NumCPU(), *flagHigh, *flagLow, (*flagHigh+*flagLow)/2, *flagPeriod, dur)
	if err := n.start(ctx); err != nil {
		return err
	}
	defer n.stop()
	id, err := n.submitPi(ctx, piSamples, 1)
	if err != nil {
		return err
	}
	if err := n.waitComputing(ctx, id); err != nil {
		return fmt.Errorf("%w (is the machine already busier than --max-owner-cpu?)", err)
	}
	fmt.Printf("node: %s\n", kernelOf(n))
	logStart := logSize(n.LogPath)

	busy0, _, err := machineCPU()
	if err != nil {
		return err
	}
	node0, comp0 := treeCPU(n.PID())
	self0, _ := procluster.ReadStat(os.Getpid())
	loadavg0 := procluster.LoadAvg()
	epoch := time.Now()
	type loadDone struct {
		res loadResult
		err error
	}
	done := make(chan loadDone, 1)
	go func() {
		r, err := runLoad(ctx, runtime.NumCPU(), dur, "-epoch", fmt.Sprint(epoch.UnixNano()),
			"-wave-high", fmt.Sprint(*flagHigh), "-wave-low", fmt.Sprint(*flagLow), "-wave-period", flagPeriod.String())
		done <- loadDone{r, err}
	}()
	var (
		trs       []transition
		paused    bool
		polls     int
		failed    int
		pausedFor time.Duration
		last      = time.Duration(0)
	)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var ld loadDone
watch:
	for {
		select {
		case ld = <-done:
			break watch
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		at := time.Since(epoch)
		state, reason, err := n.selfState(ctx)
		polls++
		if err != nil {
			failed++
			continue
		}
		if paused {
			pausedFor += at - last
		}
		last = at
		if p := state == "paused"; p != paused {
			paused = p
			trs = append(trs, transition{at: at, paused: p, state: state, reason: reason})
		}
	}
	if ld.err != nil {
		return ld.err
	}
	secs := time.Since(epoch).Seconds()
	busy1, _, _ := machineCPU()
	node1, comp1 := treeCPU(n.PID())
	self1, _ := procluster.ReadStat(os.Getpid())
	foreign := max(busy1-busy0-ld.res.CPU-(node1-node0)-(comp1-comp0)-(self1.CPU()-self0.CPU()), 0)

	fmt.Printf("\n%-10s %-9s %s\n", "at", "state", "reason")
	var pauses, resumes int
	minPaused, minRunning := time.Duration(-1), time.Duration(-1)
	for i, t := range trs {
		fmt.Printf("%-10s %-9s %s\n", t.at.Round(100*time.Millisecond), t.state, t.reason)
		if t.paused {
			pauses++
		} else {
			resumes++
		}
		if i > 0 {
			gap := t.at - trs[i-1].at
			if t.paused && (minRunning < 0 || gap < minRunning) {
				minRunning = gap
			}
			if !t.paused && (minPaused < 0 || gap < minPaused) {
				minPaused = gap
			}
		}
	}
	logPauses, logResumes := countDecisions(n.LogPath, logStart)
	hours := secs / 3600
	fmt.Printf("\nwatched %.0f s: %d pauses, %d resumes (node log: %d pause and %d resume decisions), paused %.0f %% of the time; %d polls, %d failed\n",
		secs, pauses, resumes, logPauses, logResumes, 100*pausedFor.Seconds()/secs, polls, failed)
	fmt.Printf("flaps per hour (pause/resume transitions): %.0f pauses/h, %.0f resumes/h, %.0f transitions/h\n",
		float64(pauses)/hours, float64(resumes)/hours, float64(pauses+resumes)/hours)
	fmt.Printf("the policy's promise, at most one pause and one resume per calm-down period of %v: ≤ %.0f pauses/h (a full cycle also needs --pause-after %v: ≤ %.0f/h)\n",
		*flagResume, 3600/flagResume.Seconds(), *flagPause, 3600/(*flagResume+*flagPause).Seconds())
	if minPaused >= 0 {
		fmt.Printf("shortest pause %v (must be ≥ --resume-after %v)\n", minPaused.Round(100*time.Millisecond), *flagResume)
	}
	if minRunning >= 0 {
		fmt.Printf("shortest run between a resume and the next pause %v (must be ≥ --pause-after %v)\n", minRunning.Round(100*time.Millisecond), *flagPause)
	}
	fmt.Printf("owner load applied %.1f %% of the machine on average; foreign load %.1f %% (counts as the owner's to the policy); compute child %.1f %%, node %.1f %%; load avg %s at start, %s at the end\n",
		pct(ld.res.CPU, secs), pct(foreign, secs), pct(comp1-comp0, secs), pct(node1-node0, secs), loadavg0, procluster.LoadAvg())
	if minPaused >= 0 && minPaused < *flagResume-300*time.Millisecond {
		fmt.Println("WARNING: a pause shorter than the calm-down period")
	}
	return nil
}

func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// countDecisions counts the owner policy's pause and resume decisions in the node's log after
// offset from (a cross-check of the polled transitions; the log format is the node's).
func countDecisions(path string, from int64) (pauses, resumes int) {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < from {
		return -1, -1
	}
	paused := false
	for _, l := range strings.Split(string(b[from:]), "\n") {
		if !strings.Contains(l, "owner policy decision") {
			continue
		}
		switch {
		case strings.Contains(l, "state=paused"):
			if !paused {
				pauses++
			}
			paused = true
		case paused:
			resumes++
			paused = false
		}
	}
	return pauses, resumes
}
