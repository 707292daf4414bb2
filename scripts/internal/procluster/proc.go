//go:build linux

package procluster

// One `hydra node` process with its log file.

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is one `hydra node` process, which may be started, killed and started again with the
// same data directory (so the same peer ID): the failover benchmarks restart the node they
// killed. Its output goes to LogPath, appended to across restarts, each start marked by a
// "==== <time> start <args>" line. A Proc is not safe for concurrent Start, Kill and Stop.
type Proc struct {
	Name    string   // the node's --name, and how reports name it
	Bin     string   // the hydra binary
	Args    []string // its arguments, from "node" on
	DataDir string   // its --data directory
	LogPath string   // where its stdout and stderr go
	HTTPURL string   // its API, "http://127.0.0.1:PORT"; empty if unknown
	ID      string   // its peer ID; empty if unknown

	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the process (see StartTracked) with its output appended to LogPath. It does not
// wait for the node to be up; see WaitStable.
func (p *Proc) Start() error {
	lf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node log: %w", err)
	}
	fmt.Fprintf(lf, "==== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.Args, " "))
	p.cmd = exec.Command(p.Bin, p.Args...)
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := StartTracked(p.cmd); err != nil {
		lf.Close()
		return err
	}
	p.done = make(chan struct{})
	c, done := p.cmd, p.done
	go func() {
		_ = c.Wait()
		lf.Close()
		Untrack(c)
		close(done)
	}()
	return nil
}

// Alive says whether the process was started and has not exited yet.
func (p *Proc) Alive() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID returns the process ID of the last start. It panics if the Proc was never started.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Kill SIGKILLs the node and everything under it (its compute child) and waits until it has
// exited: a crash, as the failover benchmarks want it. It does nothing if the node is not
// running.
func (p *Proc) Kill() {
	if !p.Alive() {
		return
	}
	KillTree(p.cmd)
	<-p.done
}

// Stop ends the node gracefully with SIGTERM (a node then hands in the finished part of the
// chunk in hand), and kills it as Kill does if it has not exited within grace.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	p.Kill()
}
