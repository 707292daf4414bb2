package webui

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Backend is what the HTTP layer needs from a node. node.Node implements it;
// tests use a fake.
type Backend interface {
	// Status returns the cluster as this node's replica sees it.
	Status() Status
	// Token returns the cluster's API token, or "" before the node has
	// joined a cluster (then every write is refused).
	Token() string
	// Healthy reports whether the node is running and part of a cluster
	// with a known leader; the error says what is missing.
	Healthy() error
	// Leave removes this node from the cluster for good and stops it.
	Leave(ctx context.Context) error
	// Activity is the coordinator's soft state as this node last heard it:
	// chunks in flight and measured speeds.
	Activity() Activity
}

// Config holds what New needs besides the backend.
type Config struct {
	Backend  Backend
	Jobs     JobBackend          // the job routes; nil answers them with 503
	Modules  ModuleBackend       // the WebAssembly module routes; nil answers them with 503
	Gatherer prometheus.Gatherer // served at /metrics; nil serves an empty set
	Logger   *slog.Logger
	// PNGCache keeps finished jobs' rendered PNGs (DATA/png-cache); nil
	// renders every request.
	PNGCache *PNGCache
	// RenderSlots caps concurrent large renders (a PNG not cached, raw rows
	// over 4 MiB); beyond it they are answered 429. 0: half the cores, at
	// least 2.
	RenderSlots int
}

// maxBody bounds every request body this API reads but a module upload's; a larger body is
// refused with 413 (writeTooLarge).
const maxBody = 1 << 20

// New returns the HTTP handler of a node: the API under /api/v1/ (the job
// routes when cfg.Jobs is set), /healthz and /metrics.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg, render: newRenderer(cmp.Or(cfg.RenderSlots, renderSlots()), cfg.PNGCache)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /api/v1/status", s.status)
	mux.HandleFunc("DELETE /api/v1/read-cookie", s.forgetReadCookie)
	mux.Handle("POST /api/v1/leave", s.auth(http.HandlerFunc(s.leave)))
	mux.Handle("POST /api/v1/nodes/{id}/trust/reset", s.auth(http.HandlerFunc(s.trustReset)))
	s.registerJobs(mux)
	s.registerAdmission(mux)
	s.registerConfig(mux)
	s.registerModules(mux)
	s.registerUI(mux)
	g := cfg.Gatherer
	if g == nil {
		g = prometheus.NewRegistry()
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slogPrinter{cfg.Logger}}))
	// The catch-alls: a path served with other methods is 405, any other 404, both in JSON,
	// under /api/ and outside it (/healthz, /metrics, the UI's files) alike.
	unmatched := func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (this endpoint takes %s)",
				r.Method, clip(r.URL.Path), strings.Join(allow, ", ")))
			return
		}
		what := "no such page: "
		if strings.HasPrefix(r.URL.Path, "/api/") {
			what = "no such API endpoint: "
		}
		writeError(w, http.StatusNotFound, what+r.Method+" "+clip(r.URL.Path))
	}
	mux.HandleFunc("/api/", unmatched)
	mux.HandleFunc("/", unmatched)
	return s.readGate(limitBody(mux))
}

// allowedMethods returns the methods mux serves r's path with (other than
// through the catch-alls), so that a request with the wrong method on an
// endpoint that exists is told 405 and which methods to use, not "no such
// endpoint".
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/api/" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

type server struct {
	cfg    Config
	render *renderer
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Backend.Healthy(); err != nil {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "error": err.Error()})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, s.cfg.Backend.Status())
}

func (s *server) leave(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.cfg.Backend.Leave(ctx); err != nil {
		s.kindError(w, "leave", err) // no leader to ask 503, the only server 409
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "left"})
}

func (s *server) trustReset(w http.ResponseWriter, r *http.Request) {
	t, ok := s.cfg.Backend.(Truster)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node cannot reset trust")
		return
	}
	id := r.PathValue("id")
	if id == "" || len(id) > 128 {
		writeError(w, http.StatusBadRequest, "node: a peer ID or name of at most 128 bytes")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	peer, err := t.TrustReset(ctx, id)
	if err != nil {
		s.kindError(w, "trust reset", err, "node", id) // unknown or ambiguous 400, refused 403, no leader 503
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "reset", "node": peer})
}

// auth refuses a request without an admin credential of the cluster:
// 401 without a valid bearer token, 403 for a viewer credential, 503 on a
// node that has not joined a cluster yet.
func (s *server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		role := s.roleOf(tok)
		if role == "" && s.cfg.Backend.Token() == "" && s.cfg.Backend.Status().ClusterID == "" {
			writeError(w, http.StatusServiceUnavailable, "this node has not joined a cluster yet, so it accepts no API token; retry shortly")
			return
		}
		switch role {
		case RoleAdmin:
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authKey, tok)))
		case RoleViewerCred:
			writeError(w, http.StatusForbidden, "a viewer credential cannot write: use an admin one")
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="hydra"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API token: send 'Authorization: Bearer <token>' (an admin's token is in DATA/api-token on any member)")
		}
	})
}

// Body timeouts: how long a request's body may take to arrive, from the request's start. A
// client that sent its headers and never its body held its connection and the goroutine serving
// it for good (net/http's timeouts end the headers' wait, and a read timeout of the whole
// connection would end the event streams too), so a few thousand such connections from anyone
// on the LAN held a small board's memory. A module (up to 32 MiB, over Wi-Fi) gets longer.
var (
	bodyTimeout       = 30 * time.Second
	moduleBodyTimeout = 5 * time.Minute
)

// limitBody caps every request body at maxBody bytes and bounds the time it may take to arrive
// (bodyTimeout; a module's: its own cap, moduleBodyTimeout).
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		timeout := moduleBodyTimeout
		if !isModuleUpload(r) { // modules have their own cap
			r.Body, timeout = http.MaxBytesReader(w, r.Body, maxBody), bodyTimeout
		}
		b := &timedBody{ReadCloser: r.Body}
		rc := http.NewResponseController(w)
		b.timer = time.AfterFunc(timeout, func() { _ = rc.SetReadDeadline(time.Now()) })
		r.Body = b
		next.ServeHTTP(w, r)
		if b.timer.Stop() && !b.eof.Load() {
			// A handler that answered without reading the whole body: net/http then reads what is
			// left of a small one before the connection's next request, and may wait no longer.
			_ = rc.SetReadDeadline(time.Now().Add(time.Second))
		}
	})
}

// timedBody is a request body whose timer (the connection's read deadline once it fires) stops
// at its end: a handler that goes on after reading its body (a submit waits for its commit)
// must not meet the deadline in net/http's read that watches for the client going away, which
// ends the request's context.
type timedBody struct {
	io.ReadCloser
	timer *time.Timer
	eof   atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.timer.Stop()
		b.eof.Store(true)
	}
	return n, err
}

// bodyLate answers 408 when err says the request's body did not arrive within its time
// (limitBody), and reports whether it did.
func bodyLate(w http.ResponseWriter, err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	writeError(w, http.StatusRequestTimeout, "the request's body did not arrive in time")
	return true
}

// apiError is the body of every error answer: {"error": "..."}.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, apiError{Error: msg})
}

// RetryAfter is the Retry-After (seconds) of a 503 that sets none of its own: the answers that
// mean "no leader right now, retry" come back within an election or two.
const RetryAfter = 2

// WriteJSON answers with status code and v as indented JSON, never cached (the API's answers
// describe a state that moves). It is the one JSON writer of every HTTP answer of a node, the
// API's here and the waiting view's of a node that has not started (package node), so the two
// cannot drift apart in headers or layout. Every 503 carries a Retry-After (RetryAfter seconds
// unless the caller set one), so that a client tells "try again" from "broken". The answer is
// written as writeStalled does: a client that stops reading lets go of it (a job list may be
// 100 MB). A write error (a client gone away) is dropped: the status is already sent.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	var b bytes.Buffer // json.Encoder held the whole answer too, and wrote nothing on an error
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	w.WriteHeader(code)
	if err == nil {
		_ = writeStalled(w, b.Bytes())
	}
}

// stallPiece is how much of an answer writeStalled writes under one write deadline.
const stallPiece = 64 << 10

// writeStalled writes p to w a piece at a time, each under a write deadline of stallTimeout from
// its start: an answer goes on as long as its client takes some of it, and ends (with an error)
// once the client has taken nothing for stallTimeout. Without it, a client that asked for a large
// answer (GET /api/v1/jobs, a chunk history) and stopped reading kept the handler and the whole
// answer for as long as it kept the connection open: the server has no write timeout, so that
// event streams and large downloads to slow clients go on. The server clears the deadline once
// the request is done.
func writeStalled(w http.ResponseWriter, p []byte) error {
	rc := http.NewResponseController(w)
	for len(p) > 0 {
		n := min(len(p), stallPiece)
		_ = rc.SetWriteDeadline(time.Now().Add(stallTimeout)) // unsupported: nothing to bound
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// decodeJSON reads a bounded JSON body into v, rejecting unknown fields and trailing data. It
// answers a refusal itself — 413 for a body over its limit (writeTooLarge), 400 for anything else —
// and reports whether v holds the request.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if !writeTooLarge(w, err, "request body") && !bodyLate(w, err) {
			writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON body: trailing data after the object")
		return false
	}
	return true
}

// writeTooLarge answers 413 Content Too Large, naming the limit, when err says that a body
// bounded by http.MaxBytesReader went past it, and reports whether it did. Every route that reads
// a body answers that case the same way (the request's size, not its content, is what to change),
// but a job submit, whose every refusal is 400 with the same message (submitJob).
func writeTooLarge(w http.ResponseWriter, err error, what string) bool {
	msg, ok := tooLargeText(err, what)
	if ok {
		writeError(w, http.StatusRequestEntityTooLarge, msg)
	}
	return ok
}

// tooLargeText is the error message for a body over its limit, naming the limit, when err says
// that a body bounded by http.MaxBytesReader went past it (reported by ok).
func tooLargeText(err error, what string) (msg string, ok bool) {
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		return "", false
	}
	return fmt.Sprintf("%s larger than %d bytes (%s), the most this node takes", what, mbe.Limit, sizeText(mbe.Limit)), true
}

// sizeText is n bytes in the largest binary unit that divides it (1048576: "1 MiB").
func sizeText(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error("metrics", "err", v) }
