package cli

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// cutWriter passes the first left bytes of an answer to the client, then breaks the
// connection: a node that dies, or a network that fails, in the middle of a download.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		_, _ = c.ResponseWriter.Write(p[:c.left])
		http.NewResponseController(c.ResponseWriter).Flush()
		panic(http.ErrAbortHandler) // the server closes the connection without ending the body
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

func (c *cutWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// TestResultDownloadCutShortLeavesNoPartialFile: hydra result -o FILE whose download breaks
// half-way exits 1 and leaves FILE as it was (the image of an earlier download), or absent,
// never a short image under the name, and no temporary file.
func TestResultDownloadCutShortLeavesNoPartialFile(t *testing.T) {
	var cut atomic.Bool
	_, api := newAPIThrough(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cut.Load() && strings.HasSuffix(r.URL.Path, "/result.png") {
				w = &cutWriter{ResponseWriter: w, left: 100}
			}
			h.ServeHTTP(w, r)
		})
	})
	dir := t.TempDir()
	file := filepath.Join(dir, "m.png")
	if code, _, errs := run(append([]string{"submit", "mandelbrot", "--width", "48", "--height", "32",
		"--max-iter", "500", "--wait", "-o", file}, api...)...); code != ExitOK {
		t.Fatalf("submit: exit %d: %s", code, errs)
	}
	whole, err := os.ReadFile(file)
	if err != nil || len(whole) <= 100 {
		t.Fatalf("the first download: %d bytes, %v; want a PNG of over 100 bytes", len(whole), err)
	}
	cut.Store(true)
	if code, _, errs := run(append([]string{"result", "job1", "-o", file}, api...)...); code != ExitFailure {
		t.Fatalf("result over a broken download: exit %d (%s), want %d", code, errs, ExitFailure)
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("after a broken download %s holds %d bytes (%v), want the %d of the earlier image", file, len(got), err, len(whole))
	}
	if code, _, _ := run(append([]string{"result", "job1", "-o", filepath.Join(dir, "new.png")}, api...)...); code != ExitFailure {
		t.Fatalf("result over a broken download: exit %d, want %d", code, ExitFailure)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "m.png" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v after broken downloads, want only m.png", names)
	}
}
