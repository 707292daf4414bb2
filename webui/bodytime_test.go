package webui

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// shortBodyTimeout makes bodyTimeout short for one test (the tests that change it run alone).
func shortBodyTimeout(t *testing.T, d time.Duration) {
	old := bodyTimeout
	bodyTimeout = d
	t.Cleanup(func() { bodyTimeout = old })
}

// A client that sends a request's headers and never its body is answered and let go once
// bodyTimeout has passed: it held its connection, and the goroutine serving it, for good.
func TestBodyThatNeverComesIsLetGo(t *testing.T) {
	shortBodyTimeout(t, 300*time.Millisecond)
	srv, _ := newJobServer(t)
	for _, req := range []string{"POST /api/v1/jobs", "PUT /api/v1/config", "POST /api/v1/modules"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/wasm\r\nContent-Length: 100\r\n\r\n", req, testToken)
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s without its body: no answer: %v", req, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusNotFound &&
			resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s without its body: %s", req, resp.Status)
		}
		conn.Close()
	}
}

// slowJobs is a job backend whose submit takes a while after the body has arrived (a commit).
type slowJobs struct {
	*fakeJobs
	takes time.Duration
}

func (s slowJobs) SubmitJob(ctx context.Context, spec compute.JobSpec) (compute.Job, error) {
	select {
	case <-time.After(s.takes):
	case <-ctx.Done():
		return compute.Job{}, ctx.Err()
	}
	return s.fakeJobs.SubmitJob(ctx, spec)
}

// A request whose body arrived in time is not cut off by the body's timeout however long its
// handler then takes: the timeout ends at the body's end (a read deadline left on the
// connection would end the request's context in net/http's watch for the client going away).
func TestBodyTimeoutEndsWithTheBody(t *testing.T) {
	shortBodyTimeout(t, 200*time.Millisecond)
	b := &fakeBackend{token: testToken}
	srv := httptest.NewServer(New(Config{Backend: b, Jobs: slowJobs{newFakeJobs(), time.Second}}))
	t.Cleanup(srv.Close)
	resp, body := do(t, "POST", srv.URL+"/api/v1/jobs", testToken, `{"kind":"pi","samples":1000,"seed":1}`)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("a submit whose commit outlasts the body's timeout: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
}
