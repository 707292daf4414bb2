package webui

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A node that stalls — no headers for five times the client's HTTP timeout, or a body that stops
// for the timeout — ends a download with an error, not when the caller's (long) context runs out.
func TestDownloadEndsWhenTheNodeStalls(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("the first bytes"))
			w.(http.Flusher).Flush()
		}
		select { // hung: until the test ends or the client goes
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := NewClient(srv.URL, "")
	c.HTTP.Timeout = 300 * time.Millisecond
	for _, path := range []string{"/headers", "/body"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		var out bytes.Buffer
		_, err := c.Download(ctx, path, &out)
		took := time.Since(start)
		cancel()
		want := map[string]string{"/headers": "sent no answer for 1.5s", "/body": "sent nothing for 300ms"}[path]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want the stall said", path, err)
		}
		if took > 5*time.Second {
			t.Errorf("%s: took %s, want about the stall bound", path, took)
		}
	}
}
