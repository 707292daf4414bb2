package consensus

import (
	"log/slog"
	"time"
)

// clampRestored brings the settings of a state read from a snapshot within today's bounds: a
// snapshot on disk (or one a leader sends) is input from outside, and every replica checks these
// bounds when it applies OpInit or OpSettings but Restore had none. A value out of bounds is
// not refused: a later build that narrows a bound would then strand every node whose snapshot
// holds a value the older build allowed. It is replaced by the nearest bound, or by the default
// when it has no meaning (a negative retention, disk cap or job count, an unknown admission
// mode), and a warning names the setting, the value read and the value used.
//
// Replicas still agree: each replica restores the same snapshot with the same build (a rolling
// upgrade aside, where the state already differs only by what the builds' bounds allow), and the
// clamp is a pure function of the snapshot's bytes, so they all hold the same state after it.
func clampRestored(st *ClusterState, log *slog.Logger) {
	warn := func(setting string, read, used any) {
		log.Warn("snapshot setting out of bounds, using the nearest allowed value", "setting", setting, "read", read, "used", used)
	}
	if st.Voters < 0 || st.Voters > maxVoters {
		v := min(max(st.Voters, 0), maxVoters) // 0: the default (3, and 5 at ≥ 7 servers)
		warn("voters", st.Voters, v)
		st.Voters = v
	}
	if st.ChunkTarget < 0 {
		warn("chunk-target", st.ChunkTarget, time.Duration(0))
		st.ChunkTarget = 0 // 0: each node's configured target
	}
	if st.Admit != "" && st.Admit != AdmitApproval && st.Admit != AdmitLAN {
		warn("admit", st.Admit, AdmitApproval)
		st.Admit = AdmitApproval // the stricter mode: an admin approves each node
	}
	if st.Settings == nil {
		return
	}
	s, def := *st.Settings, DefaultSettings()
	switch {
	case s.Retention <= 0:
		warn("retention", s.Retention, def.Retention)
		s.Retention = def.Retention
	case s.Retention < MinRetention || s.Retention > MaxRetention:
		v := min(max(s.Retention, MinRetention), MaxRetention)
		warn("retention", s.Retention, v)
		s.Retention = v
	}
	switch {
	case s.DiskCap < 0:
		warn("disk-cap", s.DiskCap, def.DiskCap)
		s.DiskCap = def.DiskCap
	case s.DiskCap != 0 && (s.DiskCap < MinDiskCap || s.DiskCap > MaxDiskCap):
		v := min(max(s.DiskCap, MinDiskCap), MaxDiskCap)
		warn("disk-cap", s.DiskCap, v)
		s.DiskCap = v
	}
	switch {
	case s.MaxJobs <= 0:
		warn("max-jobs", s.MaxJobs, def.MaxJobs)
		s.MaxJobs = def.MaxJobs
	case s.MaxJobs > MaxMaxJobs:
		warn("max-jobs", s.MaxJobs, MaxMaxJobs)
		s.MaxJobs = MaxMaxJobs
	}
	st.Settings = &s
}
