package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/node/owner"
)

// Config is everything `hydra node` can be told. Zero values are replaced
// by the defaults of DefaultConfig where that makes sense; Validate says
// what is wrong in one line naming the flag.
type Config struct {
	DataDir        string
	Listen         []string // multiaddrs
	HTTPAddr       string   // host:port
	Join           []string // multiaddrs with /p2p/<id>
	Cluster        string
	Name           string
	Voter          string // auto | prefer | never
	Voters         int    // 0: 3, and 5 once there are 7 or more nodes
	RaftMultiplier float64
	ChunkTarget    time.Duration
	// AuditTrustAfter is how many audits in a row a node must pass before
	// it is trusted and audited only now and then (--audit-trust-after; 0:
	// the default, 10). The coordinator makes the cluster run its value.
	AuditTrustAfter uint64
	// AuditQuarantineAfter is how many failed audits quarantine a node: it gets no work and
	// loses its vote until an admin runs hydra trust reset (--audit-quarantine-after; 0: the
	// default, 3). The coordinator makes the cluster run its value.
	AuditQuarantineAfter uint64
	MDNS                 bool
	DHT                  bool
	Logger               *slog.Logger

	// Admit is the admission mode written when this node founds the
	// cluster: "approval" (default: every new node waits for an admin) or
	// "lan" (--admit lan: nodes asking from the LAN are approved on their
	// own). Test clusters use "lan" (docs/security.md).
	Admit string
	// JoinToken is a join token (--join-token, --join-token-file,
	// $HYDRA_JOIN_TOKEN): the node joins with it, with no approval.
	JoinToken string

	// Compute makes the node a worker (default true; --compute=false keeps
	// it a member that only stores state and serves the API).
	Compute bool
	// CPUs is how many cores the compute process uses (--cpus; default all).
	CPUs int
	// CPULimit is the share of those cores' time it may use, in percent
	// (--cpu-limit, by duty cycle; default 100).
	CPULimit int
	// Retention is how long finished jobs are kept (--retention, 7 days);
	// DiskCap bounds their stored results (--disk-cap bytes, 0 = no cap);
	// MaxJobs bounds the jobs the cluster holds (--max-jobs, 20,000). They
	// seed the cluster's replicated settings when this node founds the
	// cluster; afterwards `hydra config set` changes them.
	Retention time.Duration
	DiskCap   int64
	MaxJobs   int
	// ReadAuth makes reads need a viewer or admin credential (--read-auth);
	// like the three above it seeds the cluster's settings when this node
	// founds the cluster (then: hydra config set read-auth=true|false).
	ReadAuth bool
	// MaxModuleBytes caps an uploaded WebAssembly module (--max-module-bytes; 0: 16 MiB).
	MaxModuleBytes int64

	// Owner is the owner policy: when compute steps back for the machine's
	// owner (docs/design.md §7). SysRoot and ProcRoot let tests drive the
	// sensors with a fake tree (default /sys and /proc).
	Owner    owner.Config
	SysRoot  string
	ProcRoot string

	// Out receives the line with the web address and token that a person
	// starting the node needs (default os.Stdout).
	Out io.Writer

	// AnnounceInterval is how often the node announces itself on gossip
	// (default 1 s); tests shorten it.
	AnnounceInterval time.Duration

	// minFreeBytes replaces minFreeToStart (tests, on a small file system).
	minFreeBytes uint64
}

// DefaultListen are the addresses a node listens on unless told otherwise:
// TCP and QUIC on port 4100, every IPv4 interface.
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/4100", "/ip4/0.0.0.0/udp/4100/quic-v1"}

// DefaultConfig returns the configuration `hydra node` runs with when given
// no flags.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DataDir:          DefaultDataDir(),
		Listen:           append([]string(nil), DefaultListen...),
		HTTPAddr:         "0.0.0.0:7070",
		Cluster:          "hydra",
		Name:             host,
		Voter:            "auto",
		RaftMultiplier:   1,
		ChunkTarget:      2 * time.Second,
		MDNS:             true,
		DHT:              true,
		Compute:          true,
		CPUs:             runtime.NumCPU(),
		CPULimit:         100,
		Retention:        consensus.DefaultSettings().Retention,
		Owner:            owner.DefaultConfig(),
		DiskCap:          consensus.DefaultSettings().DiskCap,
		MaxJobs:          consensus.DefaultSettings().MaxJobs,
		AnnounceInterval: time.Second,
	}
}

// DefaultDataDir is where a node keeps its identity and state when --data is
// not given: $XDG_DATA_HOME/hydra (~/.local/share/hydra) on Unix,
// ~/Library/Application Support/hydra on macOS, %LocalAppData%\hydra on
// Windows.
func DefaultDataDir() string {
	switch runtime.GOOS {
	case "windows":
		if d := os.Getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "hydra")
		}
	case "darwin":
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, "Library", "Application Support", "hydra")
		}
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "hydra")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "hydra")
	}
	return "hydra-data"
}

var clusterNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// settings are the cluster settings this node seeds when it founds a cluster.
func (c Config) settings() consensus.Settings {
	return consensus.Settings{Retention: c.Retention, DiskCap: c.DiskCap, MaxJobs: c.MaxJobs, ReadAuth: c.ReadAuth}
}

// ConfigError is a problem with the node's configuration (a flag, the data
// directory, a port in use): `hydra node` prints it on one line and exits 78 (EX_CONFIG), which
// a service manager takes as "do not restart": restarting would not fix it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(format string, args ...any) error {
	return &ConfigError{Err: fmt.Errorf(format, args...)}
}

// parsed is the validated form of Config.
type parsed struct {
	listen []multiaddr.Multiaddr
	join   []peer.AddrInfo
	voter  consensus.VoterPref
}

// Validate checks every field and returns a *ConfigError naming the flag.
func (c *Config) Validate() error {
	_, err := c.parse()
	return err
}

func (c *Config) parse() (parsed, error) {
	var p parsed
	if c.DataDir == "" {
		return p, configErr("--data: empty path")
	}
	if len(c.Listen) == 0 {
		return p, configErr("--listen: at least one address is needed")
	}
	for _, s := range c.Listen {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return p, configErr("--listen %q: not a multiaddr: %v", s, err)
		}
		p.listen = append(p.listen, a)
	}
	if c.Admit != "" && c.Admit != consensus.AdmitApproval && c.Admit != consensus.AdmitLAN {
		return p, configErr("--admit %q: want approval or lan", c.Admit)
	}
	if c.JoinToken != "" {
		if _, err := consensus.ParseJoinToken(c.JoinToken); err != nil {
			return p, configErr("--join-token: %v", err)
		}
	}
	for _, s := range c.Join {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return p, configErr("--join %q: not a multiaddr: %v", s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return p, configErr("--join %q: needs a /p2p/<peer id> part: %v", s, err)
		}
		p.join = append(p.join, *ai)
	}
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
		return p, configErr("--http %q: want HOST:PORT", c.HTTPAddr)
	}
	if !clusterNameRE.MatchString(c.Cluster) {
		return p, configErr("--cluster %q: use 1-63 letters, digits, '.', '_' or '-'", c.Cluster)
	}
	if c.Name == "" || len(c.Name) > 64 {
		return p, configErr("--name %q: must be 1-64 characters", c.Name)
	}
	v, err := consensus.ParseVoterPref(c.Voter)
	if err != nil {
		return p, configErr("--voter %q: want auto, prefer or never", c.Voter)
	}
	p.voter = v
	if c.Voters != 0 && (c.Voters < 1 || c.Voters > 9 || c.Voters%2 == 0) {
		return p, configErr("--voters %d: want an odd number from 1 to 9 (0 = automatic)", c.Voters)
	}
	if !(c.RaftMultiplier >= 0.1 && c.RaftMultiplier <= 100) { // NaN too
		return p, configErr("--raft-multiplier %g: want 0.1 to 100", c.RaftMultiplier)
	}
	if c.AuditTrustAfter > 1<<20 {
		return p, configErr("--audit-trust-after %d: at most %d", c.AuditTrustAfter, 1<<20)
	}
	if c.AuditQuarantineAfter > 1000 {
		return p, configErr("--audit-quarantine-after %d: at most 1000", c.AuditQuarantineAfter)
	}
	if c.ChunkTarget < 100*time.Millisecond || c.ChunkTarget > 10*time.Minute {
		return p, configErr("--chunk-target %s: want 100ms to 10m", c.ChunkTarget)
	}
	if c.CPUs < 1 || c.CPUs > child.MaxCPUs {
		return p, configErr("--cpus %d: want 1 to %d (default: the number of cores)", c.CPUs, child.MaxCPUs)
	}
	if c.MaxModuleBytes < 0 || c.MaxModuleBytes > wasm.MaxModuleBytes {
		return p, configErr("--max-module-bytes %d: want at most %d (0: %d)", c.MaxModuleBytes, wasm.MaxModuleBytes, wasm.DefaultMaxModuleBytes)
	}
	if c.CPULimit < 1 || c.CPULimit > 100 {
		return p, configErr("--cpu-limit %d: want a percentage from 1 to 100", c.CPULimit)
	}
	if err := c.settings().Validate(); err != nil {
		return p, configErr("--retention, --disk-cap, --max-jobs: %v", err)
	}
	if err := c.Owner.Validate(); err != nil {
		return p, configErr("owner policy: %v", err)
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = time.Second
	}
	return p, nil
}

// prepareDataDir creates the data directory (0700) and checks that it is
// writable, so an unusable --data fails at once with a clear error.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return configErr("--data %s: %v", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil && diskFull(err) {
		// No configuration error (exit 78: never restarted) but a full disk (out of inodes with
		// bytes free): Serve waits for space and starts again.
		return fmt.Errorf("--data %s: not writable: %w", dir, errors.Unwrap(err))
	}
	if err != nil {
		return configErr("--data %s: not writable: %v", dir, errors.Unwrap(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}
