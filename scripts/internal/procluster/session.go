//go:build linux

package procluster

// A benchmark run's work directory and its ways out.

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Session is one run of a benchmark program: its name for messages, its work directory, and
// the cleanup every way out must do (kill every tracked process, then remove the work
// directory unless kept). The zero value with Prog set is usable; Cleanup before SetWorkDir
// only kills.
type Session struct {
	Prog string // prefixes the program's messages, "benchfailover: …"
	Keep bool   // keep the work directory (the nodes' data and logs) and say where it is

	workDir string
	ownWork bool // created by SetWorkDir, so removed by Cleanup
}

// SetWorkDir sets the work directory to dir, or to a new temporary directory named after
// pattern (see os.MkdirTemp) if dir is "". Only a directory it created is ever removed.
func (s *Session) SetWorkDir(dir, pattern string) error {
	if dir != "" {
		s.workDir = dir
		return nil
	}
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	s.workDir, s.ownWork = d, true
	return nil
}

// WorkDir returns the work directory ("" before SetWorkDir).
func (s *Session) WorkDir() string { return s.workDir }

// Cleanup kills every tracked process (KillAll), gives the kernel a moment to reap them, then
// removes the work directory if the session created it, or says where it is if Keep.
func (s *Session) Cleanup() {
	KillAll()
	time.Sleep(100 * time.Millisecond)
	switch {
	case s.workDir == "":
	case s.Keep:
		fmt.Fprintf(os.Stderr, "work directory kept: %s\n", s.workDir)
	case s.ownWork:
		os.RemoveAll(s.workDir)
	}
}

// Fatalf prints "Prog: message" to stderr, cleans up and exits with status 1. The benchmarks
// call it wherever a measurement cannot go on; it never returns.
func (s *Session) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, s.Prog+": "+format+"\n", args...)
	s.Cleanup()
	os.Exit(1)
}

// Check calls Fatalf with err if err is not nil: for the benchmarks' "cannot go on" errors,
// which already say where they come from.
func (s *Session) Check(err error) {
	if err != nil {
		s.Fatalf("%v", err)
	}
}

// ExitOnSignal makes SIGINT, SIGTERM and SIGHUP print "Prog: <signal>, stopping", clean up and
// exit with status 130, so that no node outlives an interrupted benchmark.
func (s *Session) ExitOnSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		v := <-sig
		fmt.Fprintf(os.Stderr, "%s: %v, stopping\n", s.Prog, v)
		s.Cleanup()
		os.Exit(130)
	}()
}
