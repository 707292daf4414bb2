package webui

import (
	"bytes"
	"context"
	"errors"
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

// TestDownloadCarriesTheToken: under read-auth every read needs a credential, downloads
// included, and the client's downloads (hydra result -o, hydra submit --wait -o) sent none: the
// node answered them 401 while the same command's other reads (the job, its result) went through.
func TestDownloadCarriesTheToken(t *testing.T) {
	fb := readFake{&configFake{fakeBackend: &fakeBackend{token: "admin-tok"}, cfg: NewClusterConfig(time.Hour, 0, 10)}}
	fb.cfg.ReadAuth = true
	fj := newFakeJobs()
	addMandel(t, fj, "m", 7, 5, 5)
	srv := httptest.NewServer(New(Config{Backend: fb, Jobs: fj}))
	defer srv.Close()
	for _, tok := range []string{"viewer-tok", "admin-tok"} {
		c := NewClient(srv.URL, tok)
		if _, err := c.Result(context.Background(), "m"); err != nil {
			t.Fatalf("%s: result: %v", tok, err)
		}
		for _, raw := range []bool{false, true} {
			var out bytes.Buffer
			if _, err := c.ResultPNG(context.Background(), "m", raw, &out); err != nil || out.Len() == 0 {
				t.Errorf("%s: download (raw %t): %v, %d bytes; want the image", tok, raw, err, out.Len())
			}
		}
	}
	// Without a credential it is still refused.
	var out bytes.Buffer
	_, err := NewClient(srv.URL, "").ResultPNG(context.Background(), "m", false, &out)
	if ae := (*APIError)(nil); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("download without a credential: %v, want 401", err)
	}
}

// A server that sends an answer without end (a wrong --api, a stream) ends Do with an error
// once the answer passes MaxAnswer: Do used to read up to a gigabyte into memory (2.7 GB of RSS
// for hydra status), then fail to decode it.
func TestDoBoundsTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		buf := bytes.Repeat([]byte(" "), 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	var out struct{}
	err := NewClient(srv.URL, "").Do(context.Background(), "GET", "/api/v1/status", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "the answer passes 64 MiB") {
		t.Fatalf("an endless answer: %v, want it refused past %d bytes", err, MaxAnswer)
	}
}
