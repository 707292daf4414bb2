package webui

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// ClusterConfig is the cluster's replicated settings as the API shows and takes them
// (GET/PUT /api/v1/config, docs/api.md "Cluster settings").
type ClusterConfig struct {
	// Retention is how long finished jobs are kept, as a Go duration ("168h0m0s").
	Retention string `json:"retention"`
	// RetentionSeconds is Retention in seconds, for scripts.
	RetentionSeconds float64 `json:"retention_seconds"`
	// DiskCap is the bytes of stored results kept before the oldest finished jobs are evicted
	// (0: no cap).
	DiskCap int64 `json:"disk_cap"`
	// MaxJobs is the number of jobs the cluster holds at most; a submit beyond is refused.
	MaxJobs int `json:"max_jobs"`
	// ReadAuth: reads need a viewer or admin credential (read-auth=true); false: reads are
	// open.
	ReadAuth bool `json:"read_auth"`
}

// ConfigBackend is optional for a Backend: with it the node serves GET /api/v1/config and
// PUT /api/v1/config (an admin action: the API token); without it they answer 503.
type ConfigBackend interface {
	// ClusterConfig returns the settings as this node's replica knows them.
	ClusterConfig() ClusterConfig
	// SetClusterConfig applies key=value assignments (retention=72h, disk-cap=8GiB,
	// max-jobs=20000) to the current settings and commits the result through raft. An error
	// wrapping ErrInvalidConfig answers 400, ErrForbidden 403, ErrUnavailable 503; others 500.
	SetClusterConfig(ctx context.Context, assignments []string) (ClusterConfig, error)
}

// ErrInvalidConfig marks a settings change that fails validation (400).
var ErrInvalidConfig = errors.New("invalid settings")

// maxConfigAssignments bounds a PUT body's assignments.
const maxConfigAssignments = 16

// ConfigChange is the body of PUT /api/v1/config: key=value assignments, the keys spelled as
// `hydra config set` spells them.
type ConfigChange struct {
	Set []string `json:"set"`
}

// NewClusterConfig is the API view of settings.
func NewClusterConfig(retention time.Duration, diskCap int64, maxJobs int) ClusterConfig {
	return ClusterConfig{Retention: retention.String(), RetentionSeconds: retention.Seconds(), DiskCap: diskCap, MaxJobs: maxJobs}
}

func (s *server) registerConfig(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/config", s.getConfig)
	mux.Handle("PUT /api/v1/config", s.auth(http.HandlerFunc(s.putConfig)))
}

func (s *server) configBackend(w http.ResponseWriter) (ConfigBackend, bool) {
	cb, ok := s.cfg.Backend.(ConfigBackend)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "this node does not serve the cluster settings")
	}
	return cb, ok
}

func (s *server) getConfig(w http.ResponseWriter, r *http.Request) {
	if cb, ok := s.configBackend(w); ok {
		WriteJSON(w, http.StatusOK, cb.ClusterConfig())
	}
}

func (s *server) putConfig(w http.ResponseWriter, r *http.Request) {
	cb, ok := s.configBackend(w)
	if !ok {
		return
	}
	var ch ConfigChange
	if !decodeJSON(w, r, &ch) {
		return
	}
	if len(ch.Set) == 0 || len(ch.Set) > maxConfigAssignments {
		writeError(w, http.StatusBadRequest, `want {"set": ["retention=72h", "disk-cap=8GiB", "max-jobs=20000"]} with 1 to 16 assignments`)
		return
	}
	for _, a := range ch.Set {
		if len(a) > 128 {
			writeError(w, http.StatusBadRequest, "an assignment is longer than 128 bytes")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	cfg, err := cb.SetClusterConfig(ctx, ch.Set)
	switch {
	case errors.Is(err, ErrInvalidConfig):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		s.kindError(w, "config", err) // refused by the leader 403, no leader 503
	default:
		WriteJSON(w, http.StatusOK, cfg)
	}
}
