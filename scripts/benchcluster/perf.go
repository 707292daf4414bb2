//go:build linux

package main

// -perf: a `perf record` of one node process over a phase's measured window.

import (
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// perfRun is a running `perf record` of one process (nil when -perf is off or perf failed).
type perfRun struct {
	cmd  *exec.Cmd
	data string
}

// startPerf records p's call graphs at 999 Hz into data, if -perf is set.
func startPerf(p *procluster.Proc, data string) *perfRun {
	if !*flagPerf {
		return nil
	}
	cmd := exec.Command("perf", "record", "-F", "999", "-g", "-o", data, "-p", strconv.Itoa(p.PID()))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := procluster.StartTracked(cmd); err != nil {
		fmt.Printf("  perf: %v\n", err)
		return nil
	}
	time.Sleep(300 * time.Millisecond)
	return &perfRun{cmd: cmd, data: data}
}

// report stops the recording and prints the top symbols, self and with children.
func (r *perfRun) report() {
	if r == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		r.cmd.Process.Kill()
	}
	procluster.Untrack(r.cmd)
	for _, mode := range []string{"--no-children", "--children"} {
		out, err := exec.Command("perf", "report", "-i", r.data, "--stdio", mode, "--sort", "symbol", "-g", "none", "--percent-limit", "1.5").Output()
		if err != nil {
			fmt.Printf("  perf report: %v\n", err)
			return
		}
		fmt.Printf("  perf report %s (top symbols):\n", mode)
		k, h := 0, 0
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
				continue
			}
			l = strings.TrimRight(strings.TrimRight(l, " -"), " ")
			if k < 30 {
				fmt.Println("    " + l)
			} else if strings.Contains(l, "hydra-compute/hydra/") && h < 25 {
				fmt.Println("    (hydra) " + l)
				h++
			}
			k++
		}
	}
}
