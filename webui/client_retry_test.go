package webui

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// unavailableFor answers its first n requests 503 with retryAfter (none if ""), then 200 with {}.
// It counts the requests it got.
func unavailableFor(t *testing.T, n int32, retryAfter string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got.Add(1) <= n {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.Header().Set("Content-Type", "application/json") // WriteJSON would add a Retry-After
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error": "no leader right now"}`))
			return
		}
		WriteJSON(w, http.StatusOK, struct{}{})
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

// A read the node answers 503 with Retry-After (no leader: an election under way) is asked again
// once the wait passes, so that 'hydra job ID' during a failover answers instead of failing; a
// download too. Before, the first 503 was the command's answer.
func TestReadsAreRetriedAfterRetryAfter(t *testing.T) {
	srv, got := unavailableFor(t, 2, "0")
	c := NewClient(srv.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Do(ctx, http.MethodGet, "/api/v1/jobs/x", nil, &struct{}{}); err != nil || got.Load() != 3 {
		t.Fatalf("GET answered 503 twice, then 200: %v after %d requests, want success after 3", err, got.Load())
	}
	srv, got = unavailableFor(t, 1, "1")
	start := time.Now()
	if _, err := NewClient(srv.URL, "").Download(ctx, "/api/v1/jobs/x/result.bin", &bytes.Buffer{}); err != nil || got.Load() != 2 {
		t.Fatalf("download answered 503 once: %v after %d requests, want success after 2", err, got.Load())
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("retried after %s, before the Retry-After of 1 s", waited)
	}
}

// A write is never repeated (a second submit is a second job), nor a read whose 503 carries no
// Retry-After, nor one whose wait would outlast the caller's deadline (its answer comes at once,
// not a timeout later), nor one whose Retry-After asks for more than MaxRetryWait (a state that
// lasts: its answer says why); a node that stays unavailable ends the retries.
func TestWhatIsNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name, method, retryAfter string
		timeout                  time.Duration
		want                     int32 // requests made
	}{
		{"a write", http.MethodPost, "0", time.Minute, 1},
		{"no Retry-After", http.MethodGet, "", time.Minute, 1},
		{"a malformed Retry-After", http.MethodGet, "soon", time.Minute, 1},
		{"a wait past the deadline", http.MethodGet, "2", time.Second, 1},
		{"a state that lasts", http.MethodGet, "5", time.Minute, 1}, // a node waiting for disk space
		{"unavailable for good", http.MethodGet, "0", time.Minute, maxTries},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := unavailableFor(t, 1000, tc.retryAfter)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			start := time.Now()
			err := NewClient(srv.URL, "").Do(ctx, tc.method, "/api/v1/jobs", nil, nil)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || got.Load() != tc.want {
				t.Fatalf("%v after %d requests, want the 503 after %d", err, got.Load(), tc.want)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("the 503 came after %s, want it at once", took)
			}
		})
	}
}

func TestRetryAfterParses(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"0": 0, "2": 2 * time.Second, "120": 2 * time.Minute,
		"Mon, 07 Dec 2026 12:00:05 GMT": 5 * time.Second,
		"Mon, 07 Dec 2026 11:00:00 GMT": 0, // in the past: at once
	} {
		if got, ok := retryAfter(h, now); !ok || got != want {
			t.Errorf("Retry-After %q: %s %v, want %s", h, got, ok, want)
		}
	}
	for _, h := range []string{"", "-1", "1.5", "soon", "99999999999"} {
		if got, ok := retryAfter(h, now); ok {
			t.Errorf("Retry-After %q: %s, want it refused", h, got)
		}
	}
}

// A redirect that would turn a write into a GET (a proxy sending http:// on to https:// with a
// 301) ends the command with an error naming where it was sent: followed, a submit became a GET
// of the job list, answered 200. A redirect that keeps the method is followed, as is a read's.
func TestWritesAreNotRedirectedIntoReads(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/moved":
			http.Redirect(w, r, "/api/v1/jobs", http.StatusMovedPermanently)
		case r.URL.Path == "/kept":
			http.Redirect(w, r, "/api/v1/jobs", http.StatusPermanentRedirect)
		case r.Method == http.MethodPost:
			posts.Add(1)
			WriteJSON(w, http.StatusCreated, struct{}{})
		default:
			WriteJSON(w, http.StatusOK, []struct{}{})
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL, "")
	ctx := context.Background()
	err := c.Do(ctx, http.MethodPost, "/moved", map[string]string{"kind": "pi"}, &struct{}{})
	if err == nil || !strings.Contains(err.Error(), "redirected to") {
		t.Fatalf("a POST redirected 301: %v, want an error naming the redirect", err)
	}
	if err := c.Do(ctx, http.MethodPost, "/kept", map[string]string{"kind": "pi"}, &struct{}{}); err != nil || posts.Load() != 1 {
		t.Fatalf("a POST redirected 308: %v, %d POSTs arrived, want it followed as a POST", err, posts.Load())
	}
	var list []struct{}
	if err := c.Do(ctx, http.MethodGet, "/moved", nil, &list); err != nil {
		t.Fatalf("a GET redirected 301: %v, want it followed", err)
	}
}
