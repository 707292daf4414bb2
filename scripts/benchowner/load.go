//go:build linux

package main

// The owner's load: worker processes (this program re-executed with -worker) that hash with
// SHA-256 on one core each, either flat out or duty-cycled, and report how much they did.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// Worker flags (set by the driver, not by a person).
var (
	flagWorker = flag.Bool("worker", false, "internal: be one owner load process")
	flagUntil  = flag.Int64("until", 0, "internal: worker stops at this Unix time (ns)")
	flagDuty   = flag.Float64("duty", 100, "internal: worker's busy percent (-period 0)")
	flagEpoch  = flag.Int64("epoch", 0, "internal: start of the worker's square wave (Unix ns)")
	flagHighW  = flag.Float64("wave-high", 0, "internal: worker's busy percent in the wave's first half")
	flagLowW   = flag.Float64("wave-low", 0, "internal: worker's busy percent in the wave's second half")
	flagWave   = flag.Duration("wave-period", 0, "internal: period of the worker's square wave (0: constant -duty)")
)

// dutySlice is the duty cycle's period: short against the owner policy's 200 ms CPU window, so
// the policy sees the average, long against the scheduler's tick.
const dutySlice = 20 * time.Millisecond

// hashBlock is what one op hashes: about 10 µs with the SHA extensions.
const hashBlock = 16 << 10

// workerResult is a worker's report, one JSON line on stdout.
type workerResult struct {
	Ops  uint64  `json:"ops"`  // SHA-256 blocks of hashBlock bytes
	Secs float64 `json:"secs"` // wall time it worked for
	CPU  float64 `json:"cpu"`  // its CPU seconds
}

// runWorker is the -worker process. It exits early if its stdin ends (the driver is gone).
func runWorker() int {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	until := time.Unix(0, *flagUntil)
	epoch := time.Unix(0, *flagEpoch)
	duty := func(now time.Time) float64 {
		if *flagWave <= 0 {
			return *flagDuty / 100
		}
		if now.Sub(epoch)%*flagWave < *flagWave/2 {
			return *flagHighW / 100
		}
		return *flagLowW / 100
	}
	buf := make([]byte, hashBlock)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	var ops uint64
	for {
		now := time.Now()
		if !now.Before(until) {
			break
		}
		sliceStart := now.Truncate(dutySlice) // wall-clock aligned, so all workers are in step
		busyEnd := sliceStart.Add(time.Duration(duty(now) * float64(dutySlice)))
		if now.Before(busyEnd) {
			sum := sha256.Sum256(buf)
			buf[0] ^= sum[0]
			ops++
			continue
		}
		next := sliceStart.Add(dutySlice)
		if next.After(until) {
			next = until
		}
		time.Sleep(time.Until(next)) // the duty cycle's idle part, not a synchronisation
	}
	secs := time.Since(start).Seconds()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	if err := json.NewEncoder(os.Stdout).Encode(workerResult{Ops: ops, Secs: secs, CPU: cpu}); err != nil {
		return 1
	}
	return 0
}

// loadResult sums the workers of one load phase.
type loadResult struct {
	OpsPerSec float64 // summed over workers, each its ops over its own wall time
	CPU       float64 // CPU seconds of all workers
	Workers   []workerResult
}

// runLoad runs n workers with args until now+d and returns what they did.
func runLoad(ctx context.Context, n int, d time.Duration, args ...string) (loadResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return loadResult{}, fmt.Errorf("find own executable: %w", err)
	}
	until := time.Now().Add(d)
	type worker struct {
		cmd    *exec.Cmd
		out    bytes.Buffer
		errb   bytes.Buffer
		stdin  io.WriteCloser
		waited chan error
		reaped bool
	}
	ws := make([]*worker, 0, n)
	defer func() {
		for _, w := range ws {
			if !w.reaped {
				_ = w.cmd.Process.Kill()
				<-w.waited
			}
			procluster.Untrack(w.cmd)
			_ = w.stdin.Close()
		}
	}()
	for range n {
		w := &worker{waited: make(chan error, 1)}
		w.cmd = exec.Command(exe, append([]string{"-worker", "-until", strconv.FormatInt(until.UnixNano(), 10)}, args...)...)
		w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.errb
		if w.stdin, err = w.cmd.StdinPipe(); err != nil {
			return loadResult{}, fmt.Errorf("owner load: %w", err)
		}
		if err := procluster.StartTracked(w.cmd); err != nil {
			return loadResult{}, fmt.Errorf("owner load: start worker: %w", err)
		}
		ws = append(ws, w)
		go func() { w.waited <- w.cmd.Wait() }()
	}
	limit := time.NewTimer(time.Until(until) + 30*time.Second)
	defer limit.Stop()
	var res loadResult
	for i, w := range ws {
		select {
		case err = <-w.waited:
			w.reaped = true
		case <-ctx.Done():
			return loadResult{}, ctx.Err()
		case <-limit.C:
			return loadResult{}, fmt.Errorf("owner load: worker %d did not end", i)
		}
		if err != nil {
			return loadResult{}, fmt.Errorf("owner load: worker %d: %v: %s", i, err, w.errb.String())
		}
		var r workerResult
		if err := json.Unmarshal(w.out.Bytes(), &r); err != nil || r.Secs <= 0 {
			return loadResult{}, fmt.Errorf("owner load: worker %d said %q: %v", i, w.out.String(), err)
		}
		res.Workers = append(res.Workers, r)
		res.OpsPerSec += float64(r.Ops) / r.Secs
		res.CPU += r.CPU
	}
	return res, nil
}
