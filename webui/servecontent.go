package webui

import (
	"io"
	"net/http"
	"time"
)

// serveContent is http.ServeContent (ranges, conditional requests) with its one error body in
// JSON: a Range that no byte of the content satisfies is answered 416 {"error": …} with its
// Content-Range, like every other error of the node (docs/api.md), not net/http's plain text.
func serveContent(w http.ResponseWriter, r *http.Request, modtime time.Time, content io.ReadSeeker) {
	http.ServeContent(&rangeErrorJSON{ResponseWriter: w, r: r}, r, "", modtime, content)
}

// rangeErrorJSON replaces the plain-text answer http.ServeContent writes for an unsatisfiable
// Range with writeError's JSON; every other answer passes through untouched (ReadFrom too, so a
// file is still sent with sendfile).
type rangeErrorJSON struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool // the 416 was answered: ServeContent's own body is dropped
}

func (w *rangeErrorJSON) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable || w.replaced {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	w.Header().Del("Content-Length")
	writeError(w.ResponseWriter, code, "range "+clip(w.r.Header.Get("Range"))+
		" is not satisfiable: no byte of it is in the content (its size is in Content-Range)")
}

func (w *rangeErrorJSON) Write(p []byte) (int, error) {
	if w.replaced {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *rangeErrorJSON) ReadFrom(src io.Reader) (int64, error) {
	if w.replaced {
		return io.Copy(io.Discard, src)
	}
	return io.Copy(w.ResponseWriter, src)
}

// Unwrap lets http.ResponseController reach the connection (write deadlines).
func (w *rangeErrorJSON) Unwrap() http.ResponseWriter { return w.ResponseWriter }
