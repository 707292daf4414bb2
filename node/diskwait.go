package node

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

// diskWaitState names what a node waiting for free space is doing, in every answer of its
// waiting view.
const diskWaitState = "waiting for disk space"

// diskWaitView is the body of every JSON answer of a node waiting for free space: why it has
// not started, with the disk figures an operator needs to act. It holds nothing secret (no
// cluster state is open yet), so it is shown to anyone, whatever the cluster's read-auth.
type diskWaitView struct {
	Error       string `json:"error"` // one line for people and for clients that show {"error": …}
	State       string `json:"state"` // diskWaitState
	DataDir     string `json:"data_dir"`
	FreeBytes   uint64 `json:"free_bytes"`
	NeededBytes uint64 `json:"needed_bytes"`
}

func newDiskWaitView(dir string, free, needed uint64) *diskWaitView {
	return &diskWaitView{
		Error: fmt.Sprintf("%s before it starts: %s has %s free, %s needed; the node starts by itself once space is freed",
			diskWaitState, dir, mib(free), mib(needed)),
		State: diskWaitState, DataDir: dir, FreeBytes: free, NeededBytes: needed,
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// diskWaitHandler answers every request of a node waiting for free space with 503 and the
// current view: the UI's page (/ and /index.html) as a small HTML page that reloads itself
// (the real UI once the node is up), /healthz as an unhealthy health check, every other route
// (GET /api/v1/status among them) as the JSON view. It reads no request body and changes
// nothing: the node has no state open to read or write.
type diskWaitHandler struct {
	view atomic.Pointer[diskWaitView]
}

// diskWaitRetry is the Retry-After of the waiting view's answers, in seconds: the node looks
// at the disk every diskSpacePoll.
const diskWaitRetry = "5"

var diskWaitPage = template.Must(template.New("wait").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="` + diskWaitRetry + `">
<title>Hydra: waiting for disk space</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Waiting for disk space</h1>
<p>This node has not started: its data directory <code>{{.DataDir}}</code> has {{.Free}} free and it needs {{.Needed}}.
It starts by itself once space is freed there; this page then shows the cluster.</p>
</body></html>
`))

func (h *diskWaitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v := h.view.Load()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", diskWaitRetry)
	switch {
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/" || r.URL.Path == "/index.html"):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = diskWaitPage.Execute(w, struct{ DataDir, Free, Needed string }{v.DataDir, mib(v.FreeBytes), mib(v.NeededBytes)})
	case r.URL.Path == "/healthz":
		webui.WriteJSON(w, http.StatusServiceUnavailable, struct {
			Status string `json:"status"`
			*diskWaitView
		}{"unhealthy", v})
	default:
		webui.WriteJSON(w, http.StatusServiceUnavailable, v)
	}
}

// deadliner is a listener whose Accept can be interrupted without closing it
// (*net.TCPListener).
type deadliner interface {
	net.Listener
	SetDeadline(time.Time) error
}

// heldListener lets an http.Server serve a listener that outlives it: Close ends the
// server's Accept with a deadline in the past but keeps the socket bound. The node's real
// server then takes the very same listener, so no other process can bind the address
// between the two, and connections that arrive meanwhile wait in the kernel's backlog.
type heldListener struct{ deadliner }

func (l heldListener) Close() error { return l.SetDeadline(time.Unix(1, 0)) }

// diskWaitServer serves the waiting view on ln until stop, which hands ln back unclosed.
type diskWaitServer struct {
	h      *diskWaitHandler
	srv    *http.Server
	ln     deadliner
	served chan error
}

// serveDiskWait starts the waiting view on ln; nil (nothing served) when ln cannot be held
// open across servers.
func serveDiskWait(ln net.Listener, v *diskWaitView, log *slog.Logger) *diskWaitServer {
	dl, ok := ln.(deadliner)
	if !ok {
		return nil
	}
	s := &diskWaitServer{h: &diskWaitHandler{}, ln: dl, served: make(chan error, 1)}
	s.h.view.Store(v)
	s.srv = &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// One request per connection: once the node starts, the next request reaches the real
	// server instead of a kept-alive connection to this one.
	s.srv.SetKeepAlivesEnabled(false)
	go func() { s.served <- s.srv.Serve(heldListener{dl}) }()
	return s
}

// update replaces the view (new free space figures).
func (s *diskWaitServer) update(v *diskWaitView) {
	if s != nil {
		s.h.view.Store(v)
	}
}

// stop ends the waiting view: requests under way get their answer (for at most a few
// seconds), then the server is closed and ln is ready to Accept again for the next server.
func (s *diskWaitServer) stop() error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close() // heldListener's Close again: the socket stays bound
	}
	if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("waiting view on %s: %w", s.ln.Addr(), err)
	}
	if err := s.ln.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("hand over %s: %w", s.ln.Addr(), err)
	}
	return nil
}
