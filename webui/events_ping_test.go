package webui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Heartbeats are "ping" events a page can hear (an EventSource drops comments), sent while
// nothing else is: a page that hears nothing for several of them knows its stream is dead.
func TestEventsHeartbeatIsAnEvent(t *testing.T) {
	b := newEvBackend()
	h := newHub(b, b)
	h.beat = 50 * time.Millisecond
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ch, _ := openEvents(t, srv.URL)
	waitEvent(t, ch, "jobs", nil) // the snapshot
	first := waitEvent(t, ch, "ping", nil)
	second := waitEvent(t, ch, "ping", nil)
	if gap := second.at.Sub(first.at); gap > 2*time.Second {
		t.Fatalf("pings %s apart, want about %s", gap, h.beat)
	}
}

// clockBackend is an evBackend whose cluster's clock is off this machine's by off (webui.Clock).
type clockBackend struct {
	*evBackend
	off time.Duration
}

func (b clockBackend) ClusterNow() (time.Time, bool) { return time.Now().Add(b.off), true }

// pingStamp is the cluster's time a ping event carries; it fails the test on a ping without one.
func pingStamp(t *testing.T, ev sseEvent) time.Time {
	t.Helper()
	var p struct {
		Now string `json:"now"`
	}
	if err := json.Unmarshal([]byte(ev.data), &p); err != nil {
		t.Fatalf("ping %q: %v", ev.data, err)
	}
	at, err := time.Parse(time.RFC3339Nano, p.Now)
	if err != nil {
		t.Fatalf("ping %q carries no cluster time: %v", ev.data, err)
	}
	return at
}

// The stream stamps the cluster's time, as the backend's Clock tells it, on its first event and
// on every heartbeat: a page reads the cluster's clock from these, fresh as they arrive, and not
// from the snapshot's activity, which on an idle cluster is seconds or minutes old.
func TestEventsPingsCarryTheClusterClock(t *testing.T) {
	const off = time.Hour
	near := func(t *testing.T, what string, at, before, after time.Time) {
		t.Helper()
		if at.Before(before.Add(off)) || at.After(after.Add(off)) {
			t.Fatalf("%s stamped %s, want the backend's clock, %s ahead: between %s and %s", what,
				at.Format(time.RFC3339Nano), off, before.Add(off).Format(time.RFC3339Nano), after.Add(off).Format(time.RFC3339Nano))
		}
	}
	b := clockBackend{newEvBackend(), off}
	b.act = Activity{Term: 1, Leader: "p1", At: time.Now().Add(off - 5*time.Minute)} // what the node last heard, long ago

	// Through New, as a node serves it: the first event, before the snapshot, is a stamped ping.
	srv := newEvServer(t, b, b)
	before := time.Now()
	ch, _ := openEvents(t, srv.URL)
	if ev := <-ch; ev.name != "retry" {
		t.Fatalf("first line %+v, want retry", ev)
	}
	ev := <-ch
	if ev.name != "ping" {
		t.Fatalf("the stream's first event is %q (%s), want a ping stamped with the cluster's time", ev.name, ev.data)
	}
	near(t, "the first ping", pingStamp(t, ev), before, time.Now())
	waitEvent(t, ch, "activity", nil) // the snapshot follows
	waitEvent(t, ch, "jobs", nil)

	// The heartbeats carry it too, each stamped as it is sent.
	h := newHub(b, b)
	h.beat = 50 * time.Millisecond
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	ch2, _ := openEvents(t, hs.URL)
	waitEvent(t, ch2, "jobs", nil)
	before = time.Now()
	ev = waitEvent(t, ch2, "ping", nil)
	near(t, "a heartbeat", pingStamp(t, ev), before, time.Now())

	// Without a Clock: this machine's.
	plain := newEvBackend()
	ps := newEvServer(t, plain, plain)
	before = time.Now()
	ch3, _ := openEvents(t, ps.URL)
	ev = waitEvent(t, ch3, "ping", nil)
	if at := pingStamp(t, ev); at.Before(before) || at.After(time.Now()) {
		t.Fatalf("without a Clock the ping is stamped %s, want this machine's time", at.Format(time.RFC3339Nano))
	}
}

// unsureClock is an evBackend whose Clock knows the cluster's time (off this machine's by off)
// only once known is set: a node restarted and not yet told the time by a leader.
type unsureClock struct {
	*evBackend
	off   time.Duration
	known *atomic.Bool
}

func (b unsureClock) ClusterNow() (time.Time, bool) {
	return time.Now().Add(b.off), b.known.Load()
}

// A node that does not know the cluster's time says so: its pings carry no `now` (they carried
// its own clock, which a page took for the cluster's for up to a minute); and as soon as it
// learns the time, the stream carries a stamped ping, long before the next heartbeat.
func TestEventsPingWithoutTheClusterClock(t *testing.T) {
	const off = time.Hour
	b := unsureClock{newEvBackend(), off, new(atomic.Bool)}
	h := newHub(b, b)
	h.beat = time.Hour // only the ping of the time learnt can come within the test
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ch, _ := openEvents(t, srv.URL)
	ev := waitEvent(t, ch, "ping", nil)
	var p map[string]any
	if err := json.Unmarshal([]byte(ev.data), &p); err != nil || len(p) != 0 {
		t.Fatalf("the first ping of a node that does not know the cluster's time is %q, want {} (no now)", ev.data)
	}
	waitEvent(t, ch, "jobs", nil) // the snapshot
	before := time.Now()
	b.known.Store(true)
	ev = waitEvent(t, ch, "ping", nil)
	if at := pingStamp(t, ev); at.Before(before.Add(off)) || at.After(time.Now().Add(off)) {
		t.Fatalf("the ping once the time is known is stamped %s, want the cluster's clock, %s ahead", at.Format(time.RFC3339Nano), off)
	}
}

// TestAPIDocNamesEveryEvent: docs/api.md's Events table has a row for every event the stream
// writes, and no other; the ping's row says it carries the cluster's time (`now`) and comes first.
func TestAPIDocNamesEveryEvent(t *testing.T) {
	written := map[string]bool{}
	for _, m := range sourceMatches(t, "events*.go", regexp.MustCompile(`writeEvent\([^,]+, "([a-z]+)"`)) {
		written[m[1]] = true
	}
	if len(written) < 8 {
		t.Fatalf("found %d event names in the source: the pattern no longer matches how events are written", len(written))
	}
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, "## Events")
	if i < 0 {
		t.Fatal("docs/api.md has no Events section")
	}
	s = s[i:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z]+)` \\|(.*)$").FindAllStringSubmatch(s, -1) {
		rows[m[1]] = m[2]
	}
	for name := range written {
		if _, ok := rows[name]; !ok {
			t.Errorf("docs/api.md's Events table has no row for the %q event", name)
		}
	}
	for name := range rows {
		if !written[name] {
			t.Errorf("docs/api.md's Events table names %q, which the stream does not send", name)
		}
	}
	if r := rows["ping"]; !strings.Contains(r, "`{now}`") || !strings.Contains(r, "first") {
		t.Errorf("docs/api.md's ping row should say it carries {now}, the cluster's time, and comes first: %s", r)
	}
}

// TestEventsHeadEnds: HEAD /api/v1/events answers the stream's headers and ends. It ran the stream
// for ever, its events eaten (a HEAD answer has no body): its client, done with the answer at its
// headers, sent its next request on the same connection, which the node never read, so that
// request hung; and once the client had sent a byte after it, the stream outlived the client's
// connection too (nothing told it the connection closed), so 256 of them took every place of
// the node's event streams for good, and every page's stream was refused (503).
func TestEventsHeadEnds(t *testing.T) {
	b := newEvBackend()
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(New(Config{Backend: b, Jobs: b}))
	srv.Config.BaseContext = func(net.Listener) context.Context { return ctx } // as the node's: streams end with it
	srv.Start()
	t.Cleanup(func() { cancel(); srv.Close() })
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}} // one connection: the next request reuses it
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/api/v1/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HEAD /api/v1/events: %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, err = c.Get(srv.URL + "/api/v1/status")
	if err != nil {
		t.Fatalf("the request after a HEAD of the event stream: %v", err)
	}
	resp.Body.Close()
	// Clients gone after their HEAD, each with a byte sent after it, leave every place free.
	for range maxEventClients {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(conn, "HEAD /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
		if err == nil {
			_, err = http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodHead})
		}
		if err == nil { // the start of a next request
			_, err = conn.Write([]byte("G"))
		}
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/api/v1/events", nil)
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	resp, err = c.Do(req.WithContext(sctx))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("an event stream after %d HEADs of it: %d, want 200", maxEventClients, resp.StatusCode)
	}
}
