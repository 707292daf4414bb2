package webui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// GET /api/v1/events: server-sent events from this node's replica (docs/api.md, "Events").
//
// One hub per handler polls the backends (or wakes on Watcher), diffs what it sees against
// what it last sent, and broadcasts one pre-encoded frame — several events in one write — at
// most every minFrameGap, so a browser gets at most ~10 updates a second however busy the
// cluster is. A new client first gets a "ping" stamped with the cluster's time (Clock), then a
// snapshot (status, activity, jobcount, jobs: the newest maxListedJobs), then the frames.
// The hub runs only while someone listens. Each client has a bounded queue; a client that
// falls behind is disconnected (its EventSource reconnects and starts over from a snapshot)
// rather than buffered without bound.

// Watcher is optional for a Backend or JobBackend: the event stream then wakes as soon as the
// replica changes instead of at its next poll.
type Watcher interface {
	// Changed returns a channel that is closed at the next change of the node's state (a
	// command applied, the status or activity updated). Each call may return a new channel.
	Changed() <-chan struct{}
}

// Clock is optional for a Backend: the cluster's time as this node estimates it from the leader's
// stamps, to within their gossip's delay (docs/design.md §2, Time).
// Lease and commit times are stamped by the cluster's clock, and a browser's may be minutes or
// hours off it; so every "ping" event, the first event of every stream among them, carries this
// time, and a page reads the cluster's clock from pings that are fresh when they arrive (an
// activity's own time is whatever the node last heard, seconds or minutes old on an idle
// cluster). A node that does not know the cluster's time (it has not heard a leader since it
// started) says so: its pings carry no `now`, and the page keeps the offset it had, and the first
// frame after it learns the time carries a stamped ping, not the next heartbeat. Without a Clock
// the pings carry this machine's clock.
type Clock interface {
	// ClusterNow returns the cluster's time now, and false when this node does not know it.
	ClusterNow() (time.Time, bool)
}

// ChunkSource is optional for a JobBackend: with it the events carry each accepted chunk (its
// node, compute seconds and commit time) and GET /api/v1/jobs/{id}/chunks serves a job's
// history; without it they carry newly accepted ranges only, and that route an empty history.
type ChunkSource interface {
	// Chunks returns up to max records of a job's chunk history from sequence number from
	// on; errors wrapping compute.ErrNoSuchJob answer 404.
	Chunks(id string, from uint64, max int) (compute.ChunkPage, error)
}

// Limits of the event stream.
const (
	minFrameGap       = 100 * time.Millisecond // at most ~10 frames a second per client
	pollGap           = 200 * time.Millisecond // without a Watcher
	watchPollGap      = time.Second            // with one: a safety net (online flags age)
	statusMinorGap    = 2 * time.Second        // a status change that is only load/uptime/last_seen
	jobFullGap        = time.Second            // a running job's full view; progress in between
	heartbeatGap      = 5 * time.Second        // a "ping" event: a page that hears nothing for a while knows the stream is dead
	accessRecheck     = 2 * time.Second        // how soon an open stream ends once its reads are no longer allowed
	retryMillis       = 1000                   // the EventSource's reconnect delay (the retry: field)
	clientQueue       = 64                     // frames a client may have waiting
	maxEventClients   = 256
	maxChunksPerFrame = 4096 // per job; the rest follows in the next frame
	// maxListedJobs bounds the "jobs" event: it lists the newest this many jobs, and a
	// "jobcount" event says how many there are. At the largest max-jobs (100,000) the whole list
	// was about 50 MB, sent to every new client and to every client at every submit; older jobs
	// are paged with GET /api/v1/jobs?before=.
	maxListedJobs = 200
	// maxUnlistedPerFrame bounds the "job" and "progress" events of jobs beyond the listed ones
	// in one frame (a node renamed changes every job's view at once); the rest follow in the
	// next frames.
	maxUnlistedPerFrame = 500
	writeDeadline       = 10 * time.Second
)

// hub is the shared poller and broadcaster behind /api/v1/events.
type hub struct {
	be     Backend
	jobs   JobBackend
	chunks ChunkSource
	work   NodeWorkSource
	watch  Watcher
	now    func() time.Time
	clock  func() (time.Time, bool) // the cluster's time, for pings (Clock; time.Now without one), and whether it is known
	beat   time.Duration            // heartbeatGap; tests shorten it
	// mayRead, if set, says whether a stream's request may still read (the read-auth setting
	// and its credential as they are now): asked at least every accessRecheck while it is open.
	mayRead func(*http.Request) bool

	mu      sync.Mutex
	clients map[*eventClient]struct{}
	running bool
	st      hubState
}

// eventClient is one open stream.
type eventClient struct {
	ch chan []byte // closed when the hub drops the client
}

// hubState is what the hub last sent.
type hubState struct {
	statusJSON   []byte
	statusKey    string
	statusSent   time.Time
	activityJSON []byte
	jobsJSON     []byte    // the list for new clients (listJSON; nil: to be made again)
	order        []string  // the listed jobs' IDs (the newest maxListedJobs), newest first
	listKey      string    // order, joined
	total        int       // the number of jobs clients were last told (jobcount)
	workJSON     []byte    // the last "work" event's data (nil: none yet)
	workRevs     uint64    // the jobs' revisions summed when it was read
	workRead     time.Time // when it was read
	jobs         map[string]*jobSent
	namesKey     string // the nodes' IDs and names the views were made with
	namesGen     uint64 // changes with namesKey
	lastFrame    time.Time
	clockKnown   bool // whether the cluster's time was known at the last tick (Clock)
}

type jobSent struct {
	full     []byte // the view clients were last sent, kept while the job is listed (nil when not)
	sum      uint64 // that view's hash (viewSum), kept for every job; 0: none sent
	fullSent time.Time
	state    compute.JobState
	done     uint64
	cursor   uint64           // next chunk sequence number to send
	next     uint64           // the job's next sequence number when chunks were last read: more are owed while cursor < next
	acc      compute.RangeSet // without a ChunkSource: ranges already announced
	rev      uint64           // the job's revision (compute.JobHead.Rev) when clients got its view; 0: a view is owed
	namesGen uint64           // the node names it was made with (hubState.namesGen)
}

func newHub(be Backend, jobs JobBackend) *hub {
	h := &hub{be: be, jobs: jobs, now: time.Now, clock: machineClock, beat: heartbeatGap, clients: map[*eventClient]struct{}{}}
	if c, ok := be.(Clock); ok && c != nil {
		h.clock = c.ClusterNow
	}
	if cs, ok := jobs.(ChunkSource); ok {
		h.chunks = cs
	}
	if ws, ok := jobs.(NodeWorkSource); ok {
		h.work = ws
	}
	if w, ok := be.(Watcher); ok {
		h.watch = w
	} else if w, ok := jobs.(Watcher); ok {
		h.watch = w
	}
	return h
}

// ServeHTTP streams events until the client goes away or falls behind.
func (h *hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		// The headers only, and done. A stream run for a HEAD had its events eaten (its answer
		// has no body) and lasted for ever: its client, done at the headers, sends its next
		// request on the connection, which the stream kept from being read; and once that
		// request's first byte was read, nothing told the stream of the connection's close, so
		// each such client held one of the maxEventClients places for good.
		streamHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		return
	}
	rc := http.NewResponseController(w)
	c, err := h.subscribe()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer h.unsubscribe(c)
	streamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeDeadline)) // a stuck client cannot hold us
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The first event is a ping stamped with the cluster's time, before the snapshot: a page
	// knows the cluster's clock before it draws the snapshot's leases.
	if !send(append([]byte("retry: "+strconv.Itoa(retryMillis)+"\n\n"), h.ping()...)) {
		return
	}
	beat := time.NewTicker(h.beat)
	defer beat.Stop()
	recheck := time.NewTicker(accessRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-c.ch:
			if !ok || !send(b) {
				return
			}
		case <-beat.C:
			// An event, not a comment: an EventSource sees events only. A stream that stalls
			// without closing (the node hung or suspended, a connection silently dropped) is
			// told apart from a quiet cluster by the pings that stop. Each carries the
			// cluster's time, stamped as it is sent.
			if !send(h.ping()) {
				return
			}
		case <-recheck.C:
			if h.mayRead != nil && !h.mayRead(r) {
				return // read-auth turned on, or its credential revoked: the client reconnects and gets 401
			}
		}
	}
}

// streamHeaders sets the headers of an event stream's answer.
func streamHeaders(hd http.Header) {
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
}

// ping is a "ping" event stamped with the cluster's time now: {"now": RFC 3339 with nanoseconds,
// UTC}; {} while this node does not know the cluster's time (Clock).
func (h *hub) ping() []byte {
	var b bytes.Buffer
	if at, ok := h.clock(); ok {
		writeEvent(&b, "ping", []byte(`{"now":"`+at.UTC().Format(time.RFC3339Nano)+`"}`))
	} else {
		writeEvent(&b, "ping", []byte(`{}`))
	}
	return b.Bytes()
}

// machineClock is the hub's clock without a Clock: this machine's, known.
func machineClock() (time.Time, bool) { return time.Now(), true }

// subscribe registers a client and queues the snapshot for it, starting the hub if needed.
func (h *hub) subscribe() (*eventClient, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= maxEventClients {
		return nil, fmt.Errorf("too many event streams open on this node (%d); retry later", maxEventClients)
	}
	if !h.running {
		h.st = hubState{jobs: map[string]*jobSent{}}
		h.tick(h.now(), true) // nobody to send to yet: this only sets the state
		h.running = true
		go h.loop()
	}
	c := &eventClient{ch: make(chan []byte, clientQueue)}
	c.ch <- h.snapshot()
	h.clients[c] = struct{}{}
	return c, nil
}

func (h *hub) unsubscribe(c *eventClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.ch)
	}
}

// snapshot is the first frame of a new client: the state as last sent.
func (h *hub) snapshot() []byte {
	var b bytes.Buffer
	writeEvent(&b, "status", h.st.statusJSON)
	writeEvent(&b, "activity", h.st.activityJSON)
	writeEvent(&b, "jobcount", jobCountJSON(h.st.total))
	writeEvent(&b, "jobs", h.listJSON())
	if h.st.workJSON != nil {
		writeEvent(&b, "work", h.st.workJSON)
	}
	return b.Bytes()
}

// jobCountJSON is the data of a "jobcount" event: how many jobs there are, listed or not.
func jobCountJSON(total int) []byte {
	return []byte(`{"total":` + strconv.Itoa(total) + `}`)
}

// loop wakes on changes or polls, and broadcasts a frame at most every minFrameGap. It stops
// when the last client has gone.
func (h *hub) loop() {
	gap := pollGap
	if h.watch != nil {
		gap = watchPollGap
	}
	t := time.NewTimer(gap)
	defer t.Stop()
	for {
		var changed <-chan struct{}
		if h.watch != nil {
			changed = h.watch.Changed()
		}
		select {
		case <-changed:
		case <-t.C:
		}
		h.mu.Lock()
		if len(h.clients) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		wait := minFrameGap - h.now().Sub(h.st.lastFrame)
		h.mu.Unlock()
		if wait > 0 { // coalesce: changes during the gap go out together
			t.Reset(wait)
			<-t.C
		}
		h.mu.Lock()
		if len(h.clients) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		now := h.now()
		if frame := h.tick(now, false); len(frame) > 0 {
			h.st.lastFrame = now
			h.broadcast(frame)
		}
		h.mu.Unlock()
		t.Reset(gap)
	}
}

// broadcast queues a frame for every client; h.mu must be held. A client whose queue is full
// has fallen behind: it is dropped (its stream ends, and its EventSource reconnects).
func (h *hub) broadcast(frame []byte) {
	for c := range h.clients {
		select {
		case c.ch <- frame:
		default:
			delete(h.clients, c)
			close(c.ch)
		}
	}
}

// writeEvent appends one SSE event; data is one line of JSON.
func writeEvent(b *bytes.Buffer, name string, data []byte) {
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only our own types go here; never expected
		b, _ = json.Marshal(apiError{Error: "encode: " + err.Error()})
	}
	return b
}
