package consensus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Settings are the cluster's limits on finished jobs, replicated in raft (ClusterState.Settings)
// so that every leader evicts with the same ones: seeded from the founder's flags (--retention,
// --disk-cap, --max-jobs) when the cluster is created, changed with `hydra config set` (an
// admin action), never taken from a later node's flags.
type Settings struct {
	// Retention is how long a finished job and its results are kept.
	Retention time.Duration `json:"retention"`
	// DiskCap bounds the bytes of stored results: beyond it the oldest finished jobs are
	// evicted. 0: no cap.
	DiskCap int64 `json:"disk_cap"`
	// MaxJobs bounds the jobs the cluster holds (queued, running and finished); a submit
	// beyond it is refused.
	MaxJobs int `json:"max_jobs"`
	// ReadAuth: reads (status, jobs and results, metrics, the UI) need a viewer or admin
	// credential too; false (the default) leaves them open (docs/security.md).
	ReadAuth bool `json:"read_auth,omitempty"`
}

// Bounds of Settings (Validate), so that neither a typo nor a hostile admin can make every
// leader evict everything at once or let the state grow without bound.
const (
	MinRetention = time.Minute
	MaxRetention = 10 * 365 * 24 * time.Hour
	MinDiskCap   = 1 << 20 // a cap (other than 0) below 1 MiB is a typo
	MaxDiskCap   = 1 << 50
	// MaxMaxJobs: every node holds every job in memory, about 2 KB for a finished π job with
	// a name at its limit (TestMaxJobsMemory), and the web UI's event stream about 1 KB more
	// per job: 100,000 jobs take a few hundred MB on every node, a Raspberry Pi included. (It
	// was 1,000,000: 2 GB of job state alone.)
	MaxMaxJobs = 100_000
)

// DefaultSettings are the settings of a cluster whose state has none (created by an older
// version) and the defaults of the node flags: a week, 4 GiB, 20,000 jobs.
func DefaultSettings() Settings {
	return Settings{Retention: 7 * 24 * time.Hour, DiskCap: 4 << 30, MaxJobs: 20_000}
}

// Validate checks every field against its bounds, naming the setting as `hydra config set`
// spells it.
func (s Settings) Validate() error {
	var errs []error
	if s.Retention < MinRetention || s.Retention > MaxRetention {
		errs = append(errs, fmt.Errorf("retention %s: want %s to %s", s.Retention, MinRetention, MaxRetention))
	}
	if s.DiskCap != 0 && (s.DiskCap < MinDiskCap || s.DiskCap > MaxDiskCap) {
		errs = append(errs, fmt.Errorf("disk-cap %d: want 0 (no cap) or 1MiB to 1PiB", s.DiskCap))
	}
	if s.MaxJobs < 1 || s.MaxJobs > MaxMaxJobs {
		errs = append(errs, fmt.Errorf("max-jobs %d: want 1 to %d", s.MaxJobs, MaxMaxJobs))
	}
	return errors.Join(errs...)
}

// narrow brings a logged setting that an earlier build allowed within today's narrower bound,
// as clampRestored does for a snapshot: max-jobs above MaxMaxJobs (earlier builds allowed a
// million) becomes MaxMaxJobs. Refusing it instead would leave a replica that replays such an
// entry with other settings than one restored from a snapshot, and an init that carried it
// would leave the replayed cluster uninitialized. New values are validated before they are
// proposed (SetSettings), so only entries of earlier builds are narrowed.
func (s *Settings) narrow() {
	if s.MaxJobs > MaxMaxJobs {
		s.MaxJobs = MaxMaxJobs
	}
}

// Set applies key=value assignments (retention=72h, disk-cap=8GiB, max-jobs=20000,
// read-auth=true) to s and returns the result, validated.
func (s Settings) Set(assignments ...string) (Settings, error) {
	for _, a := range assignments {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return s, fmt.Errorf("%q: want key=value (retention=72h, disk-cap=8GiB, max-jobs=20000, read-auth=true)", a)
		}
		var err error
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "retention":
			s.Retention, err = time.ParseDuration(strings.TrimSpace(v))
		case "disk-cap", "disk_cap":
			s.DiskCap, err = ParseSize(v)
		case "max-jobs", "max_jobs":
			var n int64
			n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil && (n < 0 || n > math.MaxInt32) {
				err = errors.New("out of range")
			}
			s.MaxJobs = int(n)
		case "read-auth", "read_auth":
			s.ReadAuth, err = strconv.ParseBool(strings.TrimSpace(v))
		default:
			return s, fmt.Errorf("unknown setting %q: want retention, disk-cap, max-jobs or read-auth", k)
		}
		if err != nil {
			return s, fmt.Errorf("%s: %v", a, err)
		}
	}
	return s, s.Validate()
}

// ParseSize reads a byte count: a plain number, or one with a unit (KB, MB, GB, TB: powers of
// 1000; KiB, MiB, GiB, TiB, PiB and the bare K, M, G, T, P: powers of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30,
		"t": 1 << 40, "tib": 1 << 40, "p": 1 << 50, "pib": 1 << 50,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("size %q: want bytes, e.g. 8GiB, 500MB or 1073741824", s)
	}
	v := f * mult
	if v > 1<<62 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(v), nil
}

// FormatSize writes a byte count the way ParseSize reads it, exactly (8GiB, 1500000).
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		v    int64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// SettingsChange is the OpSettings payload: the whole new settings, and the settings they were
// made from. A change is computed on the proposer's replica, which may lag or race another
// change; with Base set, a replica refuses the change (ErrSettingsChanged) unless its settings
// are still Base, so a change made from stale settings cannot silently undo another (say, turn
// read-auth off again). Entries written before Base existed have none and replace the settings.
type SettingsChange struct {
	Settings Settings  `json:"settings"`
	Base     *Settings `json:"base,omitempty"`
}

// ErrSettingsChanged refuses a settings change whose Base is no longer the cluster's settings:
// read them again and retry (SetSettings' callers do).
var ErrSettingsChanged = errors.New("the cluster settings changed meanwhile")

// EffectiveSettings returns the cluster's settings as this replica knows them (DefaultSettings for a
// cluster created before settings were replicated).
func (s ClusterState) EffectiveSettings() Settings {
	if s.Settings == nil {
		return DefaultSettings()
	}
	return *s.Settings
}

// SetSettings commits new cluster settings (validated here and again by every replica) on
// behalf of the admin whose credential is auth (checked here and by the leader), if the
// cluster's settings are still base, the ones s was made from (else ErrSettingsChanged).
func (r *Raft) SetSettings(ctx context.Context, s, base Settings, auth string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	cmd, err := NewCommand(OpSettings, SettingsChange{Settings: s, Base: &base})
	if err != nil {
		return err
	}
	_, err = r.ApplyAs(ctx, cmd, auth)
	return err
}
