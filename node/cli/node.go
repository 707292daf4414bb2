package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/node"
	"github.com/hydra-compute/hydra/node/owner"
)

func isConfigError(err error) bool {
	var ce *node.ConfigError
	return errors.As(err, &ce)
}

func runNode(args []string, stdout, stderr io.Writer) error {
	cfg := node.DefaultConfig()
	fs := newFlagSet("node", stdout)
	listen := &stringList{vals: cfg.Listen}
	join := &stringList{}
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (identity, raft state, API token)")
	fs.Var(listen, "listen", "libp2p listen multiaddr (repeatable; port 0 picks a free port)")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP API and web UI address HOST:PORT")
	fs.Var(join, "join", "multiaddr of a peer to join, with /p2p/<id> (repeatable)")
	fs.StringVar(&cfg.Cluster, "cluster", cfg.Cluster, "cluster name; clusters with other names on the LAN stay apart")
	fs.StringVar(&cfg.Name, "name", cfg.Name, "node name shown in status and UI")
	fs.StringVar(&cfg.Voter, "voter", cfg.Voter, "raft voter preference: auto (votes go to mains-powered, rarely paused nodes), prefer or never")
	fs.IntVar(&cfg.Voters, "voters", 0, "voters the cluster keeps, taken at bootstrap (0: 3, and 5 from 7 nodes on)")
	fs.Float64Var(&cfg.RaftMultiplier, "raft-multiplier", cfg.RaftMultiplier, "scale all raft timeouts (raise on slow boards)")
	fs.DurationVar(&cfg.ChunkTarget, "chunk-target", cfg.ChunkTarget, "target duration of a chunk of work, taken at bootstrap")
	fs.Uint64Var(&cfg.AuditTrustAfter, "audit-trust-after", 0, "audits in a row a node must pass before it is trusted; until then every chunk of it is audited (0: 10)")
	fs.Uint64Var(&cfg.AuditQuarantineAfter, "audit-quarantine-after", 0, "failed audits that quarantine a node: no work and no vote until 'hydra trust reset' (0: 3)")
	fs.BoolVar(&cfg.MDNS, "mdns", cfg.MDNS, "discover peers on the LAN with mDNS")
	fs.BoolVar(&cfg.DHT, "dht", cfg.DHT, "discover peers through a DHT rendezvous bootstrapped from --join peers")
	fs.BoolVar(&cfg.Compute, "compute", cfg.Compute, "take chunks of work (false: store state and serve the API only)")
	fs.IntVar(&cfg.CPUs, "cpus", cfg.CPUs, "cores the compute process uses")
	fs.IntVar(&cfg.CPULimit, "cpu-limit", cfg.CPULimit, "percent of those cores' time compute may use (duty cycle)")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "how long finished jobs and their results are kept (these three seed the cluster's settings when this node founds it; then: hydra config set)")
	fs.Func("disk-cap", "bytes of stored results kept before the oldest finished jobs are evicted, e.g. 8GiB (0: no cap; default 4GiB)", func(v string) error {
		n, err := consensus.ParseSize(v)
		cfg.DiskCap = n
		return err
	})
	fs.IntVar(&cfg.MaxJobs, "max-jobs", cfg.MaxJobs, "jobs the cluster holds at most (queued, running and finished); a submit beyond is refused")
	fs.BoolVar(&cfg.ReadAuth, "read-auth", cfg.ReadAuth, "reads (status, jobs, results, metrics, the UI) need a viewer or admin credential too (seeds the cluster's settings when this node founds it; then: hydra config set read-auth=true|false)")
	fs.Func("max-module-bytes", "largest WebAssembly module an upload may be, e.g. 32MiB (at most 32MiB; default, or 0: 16MiB)", func(v string) error {
		n, err := consensus.ParseSize(v)
		cfg.MaxModuleBytes = n
		return err
	})
	oc := &cfg.Owner
	fs.BoolVar(&oc.Dedicated, "dedicated", oc.Dedicated, "a machine that is there to compute: ignore owner activity and battery (schedule and heat still apply)")
	fs.DurationVar(&oc.PauseAfter, "pause-after", oc.PauseAfter, "an owner rule must hold this long before compute pauses")
	fs.DurationVar(&oc.ResumeAfter, "resume-after", oc.ResumeAfter, "calm-down: every rule clear this long before compute resumes")
	maxOwner := fs.Float64("max-owner-cpu", oc.MaxOwnerCPU*100, "pause when other processes use more than this percent of the machine")
	fs.StringVar(&oc.OnBattery, "on-battery", oc.OnBattery, "on battery power: pause or run")
	fs.Float64Var(&oc.MinBattery, "min-battery", oc.MinBattery, "pause below this battery percent (0: never)")
	fs.Float64Var(&oc.TempSoft, "temp-soft", oc.TempSoft, "°C above which compute slows down linearly")
	fs.Float64Var(&oc.TempHard, "temp-hard", oc.TempHard, "°C above which compute pauses")
	fs.DurationVar(&oc.IdleAfter, "idle-after", oc.IdleAfter, "compute only after this long without user input, where the OS tells (0: ignore input)")
	schedule := fs.String("schedule", "", `windows when compute may run, local time, e.g. "mon-fri 18:00-08:00,sat-sun" (empty: always)`)
	fs.StringVar(&cfg.SysRoot, "sys-root", "", "sysfs root for the owner sensors (testing; default /sys)")
	fs.StringVar(&cfg.ProcRoot, "proc-root", "", "procfs root for the owner sensors (testing; default /proc)")
	fs.StringVar(&cfg.Admit, "admit", "", `admission of new nodes when this node founds the cluster: "approval" (default: an admin approves each) or "lan" (nodes on the LAN are approved on their own)`)
	joinToken := fs.String("join-token", "", "join token (hydra token create): join with no approval (default: $HYDRA_JOIN_TOKEN)")
	joinTokenFile := fs.String("join-token-file", "", "file holding a join token")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	applyCheat := addCheatFlags(fs, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyCheat(); err != nil {
		return err
	}
	cfg.Listen, cfg.Join = listen.vals, join.vals
	switch {
	case *joinToken != "" && *joinTokenFile != "":
		return usagef("--join-token and --join-token-file: give one")
	case *joinToken != "":
		cfg.JoinToken = *joinToken
	case *joinTokenFile != "":
		b, err := os.ReadFile(*joinTokenFile)
		if err != nil {
			return usagef("--join-token-file: %v", err)
		}
		cfg.JoinToken = strings.TrimSpace(string(b))
	default:
		cfg.JoinToken = strings.TrimSpace(os.Getenv("HYDRA_JOIN_TOKEN"))
	}
	if !(*maxOwner > 0 && *maxOwner <= 100) { // NaN too
		// 0 would mean "pause whenever anything else runs", which is never
		// quiet enough to compute; the owner package reads 0 as its default.
		return usagef("--max-owner-cpu %v: give a percent above 0 and at most 100 (--dedicated ignores the owner's use)", *maxOwner)
	}
	oc.MaxOwnerCPU = *maxOwner / 100
	// The owner policy reads a zero hysteresis as its default (1 s, 1 min): a 0 given here ran
	// as that while the node's log said 0s. The defaults are set, so a 0 is the user's: at once.
	for _, h := range []struct {
		name string
		d    *time.Duration
	}{{"--pause-after", &oc.PauseAfter}, {"--resume-after", &oc.ResumeAfter}} {
		if *h.d < 0 {
			return usagef("%s %v: give a duration of 0 (at once) or more", h.name, *h.d)
		}
		*h.d = atOnce(*h.d)
	}
	if strings.ContainsFunc(cfg.Name, unsafeRune) || !utf8.ValidString(cfg.Name) {
		// Shown in every member's status and UI: no escape sequences for their terminals.
		return usagef("--name %q: want printable text", cfg.Name)
	}
	if *schedule != "" {
		sch, err := owner.ParseSchedule(*schedule)
		if err != nil {
			return usagef("--schedule %q: %v", *schedule, err)
		}
		oc.Schedule = sch
	}
	logger, err := newLogger(stderr, *level, *format)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	if err := cfg.Validate(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	go func() {
		// A second Ctrl-C means "now": skip the graceful hand-over.
		<-ctx.Done()
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, stopSignals...)
		<-ch
		fmt.Fprintln(stderr, "hydra node: second signal, exiting at once")
		os.Exit(ExitFailure)
	}()
	// Serve makes the node again in this process after a stop on a full disk.
	return node.Serve(ctx, cfg)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "hydra %s (commit %s, built %s)\n", node.Version, node.Commit, node.BuildDate)
	return nil
}

// atOnce is a hysteresis flag's value for the owner policy, which reads 0 as its default: a 0
// given (at once) becomes owner.AtOnce, which acts on the first reading.
func atOnce(d time.Duration) time.Duration {
	if d == 0 {
		return owner.AtOnce
	}
	return d
}
