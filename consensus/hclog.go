package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hcLogger adapts a *slog.Logger to the hclog.Logger that hashicorp/raft
// and raft-autopilot require, so their logs land in the node's structured
// log (never the global logger, never stderr directly).
type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hcLogger)(nil)

func newHCLogger(l *slog.Logger, name string) *hcLogger {
	return &hcLogger{l: l, name: name}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	lv := slogLevel(level)
	if lv >= slog.LevelWarn && routine(args) {
		// autopilot logs "Error when computing next state: context canceled" at ERROR each
		// time this node stops leading (its loop's context ends), and "failed to demote raft
		// peer" (then "Failed to reconcile…") when leadership ends under a change it made:
		// routine, not a fault; the next leader's autopilot decides again.
		lv = slog.LevelDebug
	}
	if !h.l.Enabled(context.Background(), lv) {
		return
	}
	// hclog allows an odd trailing value; slog reports it as !BADKEY, fine.
	all := append(append([]any{}, h.implied...), args...)
	for i, a := range all {
		all[i] = hclogValue(a)
	}
	h.l.Log(context.Background(), lv, msg, all...)
}

// routineErrs are the errors that only say this node stopped leading or
// stopped: its context was cancelled, leadership was lost under a change, it
// is not the leader (any more), or raft is shut down.
var routineErrs = []error{context.Canceled, raft.ErrLeadershipLost, raft.ErrNotLeader, raft.ErrRaftShutdown}

// routine reports whether one of a log call's values is an error that is one
// of routineErrs. autopilot wraps a failed change with %v ("failed demoting
// server X: leadership lost while committing log"), so the chain is lost and
// the error's text is matched as well.
func routine(args []any) bool {
	for _, a := range args {
		err, ok := a.(error)
		if !ok {
			continue
		}
		for _, r := range routineErrs {
			if errors.Is(err, r) || strings.HasSuffix(err.Error(), ": "+r.Error()) {
				return true
			}
		}
	}
	return false
}

// hclogValue renders the value types hclog formats itself (hclog.Fmt and
// friends), which slog would otherwise print as their raw parts: raft logs
// its configuration as hclog.Fmt("%+v", servers), and a reader of the
// node's log must see the servers, not "[%+v [...]]".
func hclogValue(a any) any {
	switch v := a.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(v))
	case error, slog.LogValuer, time.Time, time.Duration:
		return a // slog renders these itself (a time in RFC 3339, a duration as in the text format)
	case fmt.Stringer:
		// raft logs itself ("follower", r) and its servers ("peer", raft.Server) as values
		// that print themselves; slog's JSON handler marshalled their exported fields
		// instead, "{}" for the *Raft.
		return v.String()
	}
	if k := reflect.Indirect(reflect.ValueOf(a)).Kind(); k == reflect.Struct {
		return fmt.Sprintf("%+v", a) // as the text handler prints it, in either format
	}
	return a
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) enabled(lv slog.Level) bool { return h.l.Enabled(context.Background(), lv) }
func (h *hcLogger) IsTrace() bool              { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsDebug() bool              { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsInfo() bool               { return h.enabled(slog.LevelInfo) }
func (h *hcLogger) IsWarn() bool               { return h.enabled(slog.LevelWarn) }
func (h *hcLogger) IsError() bool              { return h.enabled(slog.LevelError) }
func (h *hcLogger) ImpliedArgs() []any         { return h.implied }
func (h *hcLogger) Name() string               { return h.name }
func (h *hcLogger) SetLevel(hclog.Level)       {} // the slog handler owns the level
func (h *hcLogger) GetLevel() hclog.Level {
	switch {
	case h.enabled(slog.LevelDebug):
		return hclog.Debug
	case h.enabled(slog.LevelInfo):
		return hclog.Info
	case h.enabled(slog.LevelWarn):
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (h *hcLogger) With(args ...any) hclog.Logger {
	return &hcLogger{l: h.l, name: h.name, implied: append(append([]any{}, h.implied...), args...)}
}

func (h *hcLogger) Named(name string) hclog.Logger {
	n := name
	if h.name != "" {
		n = h.name + "." + name
	}
	return &hcLogger{l: h.l.With("logger", n), name: n, implied: h.implied}
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	return &hcLogger{l: h.l.With("logger", name), name: name, implied: h.implied}
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		msg := strings.TrimSpace(string(p))
		lv := hclog.Info
		for prefix, l := range map[string]hclog.Level{"[ERR": hclog.Error, "[WARN": hclog.Warn, "[DEBUG": hclog.Debug, "[TRACE": hclog.Trace} {
			if strings.HasPrefix(msg, prefix) {
				lv = l
				if i := strings.Index(msg, "]"); i >= 0 {
					msg = strings.TrimSpace(msg[i+1:])
				}
				break
			}
		}
		h.Log(lv, msg)
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
