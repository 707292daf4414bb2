package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// The web UI: static assets embedded in the binary (webui/static; third-party files under
// static/vendor are copied there by scripts/build-ui and committed, so go build needs no
// build step) and served at / by every node. Nothing is loaded from elsewhere: the
// Content-Security-Policy forbids it.

//go:embed static
var staticFS embed.FS

// contentSecurityPolicy lets the page load and connect to its own node only.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; " +
	"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// registerUI adds the event stream, the chunk history route and the UI to mux.
func (s *server) registerUI(mux *http.ServeMux) {
	h := newHub(s.cfg.Backend, s.cfg.Jobs)
	h.mayRead = func(r *http.Request) bool { ok, _, _ := s.mayRead(r); return ok }
	mux.Handle("GET /api/v1/events", h)
	mux.Handle("GET /api/v1/jobs/{id}/chunks", s.needJobs(s.jobChunks(h.chunks)))
	assets := newAssets()
	mux.HandleFunc("GET /{$}", assets.serve)
	mux.HandleFunc("GET /index.html", assets.serve)
	mux.HandleFunc("GET /assets/", assets.serve)
}

// asset is one embedded file with its validator.
type asset struct {
	data  []byte
	etag  string
	ctype string
}

type assetSet struct {
	once  sync.Once
	files map[string]asset // by URL path
}

func newAssets() *assetSet { return &assetSet{} }

func (a *assetSet) load() {
	a.files = map[string]asset{}
	_ = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		data, err := staticFS.ReadFile(p)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(data)
		url := "/assets/" + strings.TrimPrefix(p, "static/")
		if p == "static/index.html" {
			url = "/"
		}
		a.files[url] = asset{data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: contentType(p)}
		return nil
	})
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	}
	return "application/octet-stream"
}

// serve answers an asset with an ETag (browsers revalidate: Cache-Control no-cache), or 404.
func (a *assetSet) serve(w http.ResponseWriter, r *http.Request) {
	a.once.Do(a.load)
	p := r.URL.Path
	if p == "/index.html" {
		p = "/"
	}
	f, ok := a.files[p]
	if !ok {
		// JSON, as every unknown path's 404 (docs/api.md): the catch-all's words.
		writeError(w, http.StatusNotFound, "no such page: "+r.Method+" "+clip(r.URL.Path))
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if p == "/" {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
	}
	serveContent(w, r, time.Time{}, bytes.NewReader(f.data))
}
