// Package cli implements the hydra command line: subcommands, flags and exit
// codes. main.go only calls Main.
//
// Exit codes scripts and service managers can trust: 0 success, 1 a runtime
// failure (node unreachable, request refused, a node that stopped on an
// error), 78 a usage or configuration error (sysexits EX_CONFIG: bad flag,
// unusable data directory, port in use, malformed multiaddr), always with a
// one-line message; a request the node refuses, whatever its status, is a
// runtime failure (1). Go itself exits with 2 after a panic: no error of ours
// uses 2, so a service manager can restart on a panic and not on a
// configuration error (packaging/hydra.service: RestartPreventExitStatus=78).
//
// `hydra node` (node.go) runs a node; `hydra demo` (demo.go) runs four of them as processes. Every
// other command is a client of a running node's HTTP API (client.go: newClientFlags and
// apiFlags.connect find it through --api, or DATA/api-url, and the credential through --token,
// $HYDRA_TOKEN or DATA/api-token). A client keeps the answering node's clock from its Date
// header (nodeclock.go), so the ages it prints are right on a machine whose clock is off.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/hydra-compute/hydra/node/child"
)

// Exit codes (see the package comment).
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitConfig  = 78 // sysexits.h EX_CONFIG
)

// stopSignals end a node gracefully, and a command's wait or download as an interruption:
// Ctrl-C, SIGTERM (a service manager, kill) and SIGHUP (the terminal or SSH session it ran in
// closed), which would otherwise kill the process on the spot, without a node's hand-over of
// leadership or a command's clean-up of its temporary file.
// A signal the process was started with ignored (nohup's SIGHUP, a background job's SIGINT)
// stays ignored: signal.Notify would undo that.
var stopSignals = func() []os.Signal {
	var sigs []os.Signal
	for _, s := range []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP} {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	return sigs
}()

// usageError marks an error as the caller's mistake (exit code ExitConfig).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"node", "run a node (joins or forms a cluster)", runNode},
		{"status", "show the cluster as a node sees it", runStatus},
		{"leave", "remove the local node from its cluster for good and stop it", runLeave},
		{"recover", "bring back a cluster that lost a majority of its voters (node stopped)", runRecover},
		{"submit", "submit a job: hydra submit pi|mandelbrot|wasm [flags] [--wait]", runSubmit},
		{"jobs", "list jobs, newest first", runJobs},
		{"job", "show one job: state, progress, parameters, which nodes did how much", runJob},
		{"result", "print a job's result, or write its image (-o FILE, --raw)", runResult},
		{"cancel", "cancel a job (accepted results are kept)", runCancel},
		{"rm", "delete a job and its results", runRm},
		{"approve", "admit a node waiting for approval: hydra approve FINGERPRINT [--role worker]", runApprove},
		{"deny", "refuse a node waiting for approval, for good: hydra deny FINGERPRINT", runDeny},
		{"remove", "evict a node and refuse its key: hydra remove NODE (name, ID or fingerprint)", runRemove},
		{"token", "join tokens and API credentials: hydra token create|list|revoke", runToken},
		{"admit", "set how new nodes are admitted: hydra admit approval|lan", runAdmit},
		{"config", "show or change the cluster's settings: hydra config get | set retention=72h disk-cap=8GiB max-jobs=20000", runConfig},
		{"trust", "hydra trust reset NODE: clear a quarantined node's failed audits (admin)", runTrust},
		{"version", "print version, commit and build date", runVersion},
		{"demo", "start a local demo cluster, run a π and a Mandelbrot job, kill the coordinator midway", runDemo},
	}
}

// Main runs the hydra command line with args (without the program name) and
// returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == child.Subcommand {
		// Hidden: the compute child process the node starts (docs/design.md §7), not for users.
		return child.Main(os.Stdin, stdout, stderr)
	}
	stampFromBuildInfo()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(stdout)
		if len(args) == 0 {
			return ExitConfig
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		if err == nil || errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "hydra %s: %s\n", c.name, oneLine(err.Error()))
		var ue usageError
		if errors.As(err, &ue) || isConfigError(err) {
			return ExitConfig
		}
		return ExitFailure
	}
	fmt.Fprintf(stderr, "hydra: unknown command %q (see 'hydra help')\n", args[0])
	return ExitConfig
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "hydra: idle machines cooperating on parallel work")
	fmt.Fprintln(w, "\nUsage: hydra <command> [flags]   ('hydra <command> -h' for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
}

func oneLine(s string) string {
	return clean(strings.Join(strings.Fields(s), " "))
}

// clean makes a string a node or the network supplied safe to print on a terminal: control
// characters (escape sequences that would clear the screen, retitle the window or move the
// cursor) and bidirectional-text controls become U+FFFD. Node names come from every node's own
// --name and from machines waiting for approval, which nobody vouched for yet.
func clean(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return utf8.RuneError
		}
		return r
	}, s)
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)
}

// newFlagSet makes a flag set that reports errors to us instead of printing
// usage and exiting; -h prints the flags to stdout (parseFlagSet), a bad flag
// only its one-line error.
func newFlagSet(name string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hydra "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage: hydra %s [flags]\n", name)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlagSet parses args into fs, the one place a flag error is judged: -h
// prints the usage and comes back as flag.ErrHelp, which Main answers with
// exit 0; any other error, a bad or unknown flag, as a usageError (exit 78,
// ExitConfig) and nothing else: the flag package calls Usage on every parse
// error, so it is silenced during Parse, and a typo answers with one line, not
// one line and the whole flag list. Positional arguments are left in fs.Args
// for the caller.
func parseFlagSet(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err == nil {
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return err
	}
	return usageError{err}
}

// parseFlags parses args and turns flag errors into usage errors; stray
// positional arguments are refused.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagSet(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// stringList is a repeatable string flag (--listen, --join).
type stringList struct {
	vals []string
	set  bool
}

func (s *stringList) String() string { return strings.Join(s.vals, ",") }
func (s *stringList) Set(v string) error {
	if !s.set {
		s.vals, s.set = nil, true
	}
	s.vals = append(s.vals, v)
	return nil
}
