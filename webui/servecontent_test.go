package webui

import (
	"net/http"
	"strings"
	"testing"
)

// TestUnsatisfiableRangeIsJSON: a Range beyond the content of a finished job's cached PNG or of
// a UI file is a JSON 416 with the content's size in Content-Range, like every other error of
// the node; it was net/http's plain text. A satisfiable range still gets its bytes.
func TestUnsatisfiableRangeIsJSON(t *testing.T) {
	srv, _, _, _ := newRenderFixture(t)
	png := srv.URL + "/api/v1/jobs/small/result.png"
	resp, whole := do(t, "GET", png, "", "") // rendered, then cached
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the PNG: %d", resp.StatusCode)
	}
	ranged := func(url, rng string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Range", rng)
		return send(t, req)
	}
	resp, part := ranged(png, "bytes=0-9")
	if resp.StatusCode != http.StatusPartialContent || string(part) != string(whole[:10]) {
		t.Fatalf("bytes=0-9 of the cached PNG: %d, %d bytes", resp.StatusCode, len(part))
	}
	for _, url := range []string{png, srv.URL + "/"} {
		resp, data := ranged(url, "bytes=99999999-")
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			!strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes */") ||
			!strings.Contains(errMsg(t, data), "bytes=99999999-") {
			t.Errorf("GET %s past its end: %d, Content-Type %q, Content-Range %q, %s", url, resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header.Get("Content-Range"), data)
		}
	}
}
