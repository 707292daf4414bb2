//go:build linux

package webui

import (
	"bytes"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// TestStallLimitedEndsAStuckDownload: a result download whose client stops reading ends once
// stallTimeout passes without progress, so its handler lets go of what it holds (a render slot,
// a render others wait for, a view of the result store); without the limit it waits as long as
// the client keeps the connection open.
func TestStallLimitedEndsAStuckDownload(t *testing.T) {
	defer func(d time.Duration) { stallTimeout = d }(stallTimeout)
	stallTimeout = 300 * time.Millisecond
	ended := make(chan error, 1)
	srv := httptest.NewServer(stallLimited(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		block := make([]byte, 1<<20)
		for range 256 { // 256 MiB: more than any socket buffers hold
			if _, err := w.Write(block); err != nil {
				ended <- err
				return
			}
		}
		ended <- nil
	}))
	defer srv.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /result.bin HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select { // the client reads nothing
	case err := <-ended:
		if err == nil {
			t.Fatal("256 MiB written to a client that reads nothing")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler still writes to a client that stopped reading")
	}
}

// TestStuckClientReleasesAJSONAnswer: a JSON answer whose client stops reading ends once
// stallTimeout passes without progress, as a download does. GET /api/v1/jobs lists every job
// (about 1 KB each, 100 MB at max-jobs 100,000) and reads are open by default: a client that
// asked for it and read nothing kept the handler and the whole encoded answer for as long as it
// kept the connection open, so a few such clients held gigabytes of the node's memory.
func TestStuckClientReleasesAJSONAnswer(t *testing.T) {
	defer func(d time.Duration) { stallTimeout = d }(stallTimeout)
	stallTimeout = 300 * time.Millisecond
	fj := newFakeJobs()
	for i := range 2000 { // about 1 MB of views: more than the small socket buffers below hold
		fj.add(compute.Job{ID: fmt.Sprintf("j%04d", i), Kind: compute.KindPi, Spec: piSpec(1000, uint64(i)),
			State: compute.StateQueued, TotalUnits: 1000, SubmittedAt: t0.Add(time.Duration(i) * time.Second)})
	}
	api := New(Config{Backend: &fakeBackend{token: testToken}, Jobs: manyChunks{fj}})
	for _, path := range []string{"/api/v1/jobs", "/api/v1/jobs/j0001/chunks?limit=20000"} {
		ended := make(chan struct{})
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(ended)
			api.ServeHTTP(w, r)
		}))
		srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				_ = c.(*net.TCPConn).SetWriteBuffer(4096)
			}
		}
		srv.Start()
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		conn, err := d.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
		select { // the client reads nothing
		case <-ended:
		case <-time.After(20 * time.Second):
			t.Errorf("GET %s: the handler still writes to a client that stopped reading", path)
		}
		conn.Close()
		srv.Close()
	}
}

// manyChunks is a JobBackend whose every job has as long a chunk history as asked for.
type manyChunks struct{ *fakeJobs }

func (manyChunks) Chunks(_ string, from uint64, max int) (compute.ChunkPage, error) {
	p := compute.ChunkPage{First: from, Next: from + uint64(max)}
	for i := range uint64(max) {
		p.Records = append(p.Records, compute.ChunkRecord{Seq: from + i, Range: compute.Range{Start: i, End: i + 1}, Node: "peerA", Committed: t0})
	}
	return p, nil
}

// TestPNGCacheRenderIgnoresASlowClient: a finished job's PNG is rendered into the cache at the
// node's pace, not at that of the client whose request started the render. The render was
// streamed to that client, so one that read slowly (a few KB a second never stalls a write for
// stallTimeout) held a render slot, and every other request for the same PNG waited for it with
// no end: here a client that reads nothing holds it for the whole stall timeout.
func TestPNGCacheRenderIgnoresASlowClient(t *testing.T) {
	defer func(d time.Duration) { stallTimeout = d }(stallTimeout)
	stallTimeout = 10 * time.Minute
	_, sj, cache, _ := newRenderFixture(t)
	p := compute.MandelParams{Width: 1024, Height: 1000, CenterX: -0.5, Span: 3, MaxIter: 60}
	if err, ok := sj.ApplyCommand(compute.Submit{ID: "whole", Time: t0, Spec: compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &p}}, 0).(error); ok {
		t.Fatal(err)
	}
	img := make([]uint32, p.Width*p.Height)
	if err := compute.MandelRows(p, 0, p.Height, img); err != nil {
		t.Fatal(err)
	}
	var items []compute.ChunkResult
	for a := 0; a < p.Height; a += 100 {
		items = append(items, compute.ChunkResult{Chunk: compute.Chunk{Job: "whole", Range: compute.Range{Start: uint64(a), End: uint64(a + 100)}}, Node: "n",
			Payload: compute.EncodeMandelPayload(img[a*p.Width : (a+100)*p.Width])})
	}
	if err, ok := sj.ApplyCommand(compute.Results{Time: t0, Items: items}, 0).(error); ok {
		t.Fatal(err)
	}
	if j, _ := sj.Job("whole"); !j.State.Finished() {
		t.Fatalf("job whole is %s, want finished", j.State)
	}
	srv := httptest.NewUnstartedServer(New(Config{Backend: &fakeBackend{token: testToken}, Jobs: sj, PNGCache: cache, RenderSlots: 2}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			_ = c.(*net.TCPConn).SetWriteBuffer(4096)
		}
	}
	srv.Start()
	defer srv.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slow, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	sj.held.Store(1)
	if _, err := fmt.Fprintf(slow, "GET /api/v1/jobs/whole/result.png HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select { // its render has begun
	case <-sj.waiting:
		close(sj.release)
	case <-time.After(20 * time.Second):
		t.Fatal("the slow client's request started no render")
	}
	hc := http.Client{Timeout: time.Minute}
	resp, err := hc.Get(srv.URL + "/api/v1/jobs/whole/result.png")
	if err != nil {
		t.Fatalf("the PNG for a second client while the first reads nothing: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("second client: %d, %v", resp.StatusCode, err)
	}
	if _, err := png.Decode(bytes.NewReader(body)); err != nil || len(body) < 64<<10 {
		t.Fatalf("second client: %d bytes (want a PNG larger than the socket buffers): %v", len(body), err)
	}
	j, _ := sj.Job("whole")
	path, _ := cache.path(j)
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("cache file: %v (%d bytes, served %d)", err, len(b), len(body))
	}
}
