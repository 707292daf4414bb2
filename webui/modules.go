package webui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/hydra-compute/hydra/compute"
)

// ModuleInfo describes a stored WebAssembly module (docs/wasm.md).
type ModuleInfo struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Jobs lists the unfinished jobs that use the module (it cannot be deleted while any does).
	Jobs []string `json:"jobs,omitempty"`
}

// ModuleBackend is what the module routes need from a node.
type ModuleBackend interface {
	// PutModule validates and stores a module (content-addressed: storing the same bytes
	// twice is fine). Errors wrapping ErrBadModule answer 400.
	PutModule(ctx context.Context, code []byte) (ModuleInfo, error)
	// Modules lists the stored modules.
	Modules() []ModuleInfo
	// DeleteModule removes a module. Errors wrapping ErrNoSuchModule answer 404, ErrModuleInUse
	// 409 (an unfinished job uses it, judged on state at least as new as the leader's commit at
	// the time of the request), ErrUnavailable 503 with Retry-After (no leader to ask that of).
	DeleteModule(ctx context.Context, sha string) error
	// MaxModuleBytes is the largest module accepted.
	MaxModuleBytes() int64
}

// Errors of ModuleBackend that the routes map to statuses.
var (
	ErrBadModule    = errors.New("invalid module")
	ErrNoSuchModule = errors.New("no such module")
	ErrModuleInUse  = errors.New("module in use")
)

// WasmJobBackend is what the result routes of WebAssembly jobs need; a JobBackend that does
// not implement it answers those routes with 404.
type WasmJobBackend interface {
	WasmResult(id string) (compute.WasmResult, error)
	WasmOutput(id string, w io.Writer) error
}

func (s *server) registerModules(mux *http.ServeMux) {
	need := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s.cfg.Modules == nil {
				writeError(w, http.StatusServiceUnavailable, "this node serves no WebAssembly modules")
				return
			}
			h(w, r)
		}
	}
	mux.Handle("POST /api/v1/modules", s.auth(need(s.putModule)))
	mux.Handle("GET /api/v1/modules", need(s.listModules))
	mux.Handle("DELETE /api/v1/modules/{sha}", s.auth(need(s.deleteModule)))
	mux.Handle("GET /api/v1/jobs/{id}/result.bin", s.needJobs(stallLimited(s.jobBin)))
}

// isModuleUpload tells limitBody which request carries a module: its body is bounded by the
// module cap instead of the 1 MiB of JSON bodies.
func isModuleUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/api/v1/modules"
}

func (s *server) putModule(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/wasm" && ct != "application/octet-stream" {
		writeError(w, http.StatusUnsupportedMediaType, "send the module's raw bytes with Content-Type: application/wasm")
		return
	}
	limit := s.cfg.Modules.MaxModuleBytes()
	code, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if !writeTooLarge(w, err, "module") && !bodyLate(w, err) {
			writeError(w, http.StatusBadRequest, "read module: "+err.Error())
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	info, err := s.cfg.Modules.PutModule(ctx, code)
	if err != nil {
		s.moduleError(w, "upload", err)
		return
	}
	WriteJSON(w, http.StatusOK, info)
}

func (s *server) listModules(w http.ResponseWriter, r *http.Request) {
	mods := s.cfg.Modules.Modules()
	if mods == nil {
		mods = []ModuleInfo{}
	}
	WriteJSON(w, http.StatusOK, mods)
}

func (s *server) deleteModule(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	if err := s.cfg.Modules.DeleteModule(ctx, sha); err != nil {
		s.moduleError(w, "delete "+clip(sha), err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"sha256": sha, "deleted": true})
}

func (s *server) moduleError(w http.ResponseWriter, what string, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadModule):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNoSuchModule):
		code = http.StatusNotFound
	case errors.Is(err, ErrModuleInUse):
		code = http.StatusConflict
	case errors.Is(err, ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, "module "+what+": "+err.Error())
}

// wasmResult fills a result view of a WebAssembly job.
func (s *server) wasmResult(w http.ResponseWriter, j compute.Job, v *ResultView) bool {
	wj, ok := s.cfg.Jobs.(WasmJobBackend)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("job %s: this node shows no WebAssembly results", j.ID))
		return false
	}
	res, err := wj.WasmResult(j.ID)
	if err != nil {
		s.jobError(w, j.ID, "result", err)
		return false
	}
	v.WasmResult = &res
	if res.Reduce == compute.ReduceConcat {
		v.ResultBin = jobPath(j.ID) + "/result.bin"
	}
	return true
}

// jobBin streams a concat job's output bytes in item order.
func (s *server) jobBin(w http.ResponseWriter, r *http.Request) {
	j, ok := s.job(w, r)
	if !ok {
		return
	}
	wj, ok := s.cfg.Jobs.(WasmJobBackend)
	if !ok || j.Kind != compute.KindWasm || j.Spec.Wasm == nil || j.Spec.Wasm.Reduce != compute.ReduceConcat {
		writeError(w, http.StatusNotFound, fmt.Sprintf("job %s has no binary result (only wasm jobs with reduce concat)", j.ID))
		return
	}
	res, err := wj.WasmResult(j.ID)
	if err != nil {
		s.jobError(w, j.ID, "result", err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.bin"`, safeFileName(j.ID)))
	w.Header().Set("X-Hydra-Done-Items", fmt.Sprint(res.DoneItems))
	w.Header().Set("X-Hydra-Complete", fmt.Sprint(res.Complete))
	if err := wj.WasmOutput(j.ID, w); err != nil {
		s.cfg.Logger.Warn("result.bin", "job", j.ID, "err", err)
	}
}
