package webui

import (
	"bytes"
	"errors"
	"hash/maphash"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// tick polls the backends and returns the frame of what changed since the last tick. With
// init set it records the state only (the hub is starting: there is nobody to tell yet).
func (h *hub) tick(now time.Time, init bool) []byte {
	var b bytes.Buffer
	// The cluster's time just learnt (a restarted node heard the leader): a stamped ping now,
	// first in the frame, so that pages correct their clock before the next heartbeat and
	// before they draw this frame's leases.
	if _, known := h.clock(); known != h.st.clockKnown {
		h.st.clockKnown = known
		if known {
			b.Write(h.ping())
		}
	}
	st := h.be.Status()
	sj := mustJSON(st)
	key := statusKey(st)
	if !bytes.Equal(sj, h.st.statusJSON) && (key != h.st.statusKey || now.Sub(h.st.statusSent) >= statusMinorGap) {
		h.st.statusJSON, h.st.statusKey, h.st.statusSent = sj, key, now
		writeEvent(&b, "status", sj)
	}
	if act := mustJSON(h.be.Activity()); !bytes.Equal(act, h.st.activityJSON) {
		h.st.activityJSON = act
		writeEvent(&b, "activity", act)
	}
	if h.jobs == nil {
		h.st.jobsJSON, h.st.total = []byte("[]"), 0
	} else {
		h.tickJobs(&b, now, init, st)
	}
	if init {
		return nil
	}
	return b.Bytes()
}

// statusKey is what makes a status change worth sending at once: membership, roles, states,
// the leader. Load, uptime and last_seen changes wait for statusMinorGap.
func statusKey(st Status) string {
	var k strings.Builder
	k.WriteString(st.Leader)
	k.WriteString("|" + strconv.FormatUint(st.Term, 10) + "|" + st.Self.ID)
	for _, n := range st.Nodes {
		k.WriteString("|" + n.ID + "," + n.Name + "," + n.Role + "," + strconv.FormatBool(n.Online) + "," + n.State + "," + n.OS + "," + n.Arch + "," + strconv.Itoa(n.Cores) + "," + n.Version)
	}
	k.WriteString("|" + st.Admit + "|" + st.Admission)
	for _, p := range st.Pending { // a node waiting for approval shows at once
		k.WriteString("|p:" + p.ID + "," + p.Fingerprint)
	}
	return k.String()
}

// progressEvent is the small "progress" event of a running job, sent between its full views.
type progressEvent struct {
	ID             string            `json:"id"`
	State          compute.JobState  `json:"state"`
	DoneUnits      uint64            `json:"done_units"`
	TotalUnits     uint64            `json:"total_units"`
	Progress       float64           `json:"progress"`
	ComputeSeconds float64           `json:"compute_seconds"`
	Pi             *compute.PiResult `json:"pi,omitempty"` // π: the result over the accepted samples
}

func (h *hub) tickJobs(b *bytes.Buffer, now time.Time, init bool, st Status) {
	names := make(map[string]string, len(st.Nodes))
	var nk strings.Builder
	for _, n := range st.Nodes {
		names[n.ID] = n.Name
		nk.WriteString(n.ID + "\x00" + n.Name + "\x00")
	}
	if nk.String() != h.st.namesKey { // a job's view names its nodes: every view is made again
		h.st.namesKey = nk.String()
		h.st.namesGen++
	}
	heads, full := h.jobHeads()
	newestFirst(heads, func(h compute.JobHead) time.Time { return h.SubmittedAt }) // as GET /api/v1/jobs
	var key strings.Builder
	order := make([]string, 0, min(len(heads), maxListedJobs))
	seen := make(map[string]bool, len(heads))
	unlisted := maxUnlistedPerFrame // events of jobs beyond the listed ones this frame may still carry
	var body bytes.Buffer           // this tick's events of single jobs
	var revs uint64                 // every job's revision, summed: tickWork reads the sums again when it moves
	for _, hd := range heads {
		revs += hd.Rev
		js := h.st.jobs[hd.ID]
		listed := len(order) < maxListedJobs
		if js != nil && !listed {
			js.full = nil // held for the list only: 100,000 views would be 100 MB
		}
		settled := js.settled(hd, h.st.namesGen) && (!listed || js.full != nil)
		var j compute.Job
		if !settled {
			var ok bool
			if j, ok = full[hd.ID]; !ok {
				if j, ok = h.jobs.Job(hd.ID); !ok {
					continue // deleted since its head was read
				}
			}
		}
		seen[hd.ID] = true
		if listed {
			key.WriteString(hd.ID + "\x00")
			order = append(order, hd.ID)
		}
		if settled {
			continue // finished, sent as it is, nothing owed: no view to make (a cluster may hold 100,000 of them)
		}
		v := newJobView(j, names)
		full := mustJSON(v)
		sum := viewSum(full)
		isNew := js == nil
		if isNew {
			js = &jobSent{}
			h.st.jobs[j.ID] = js
		}
		changed := sum != js.sum
		if changed && !listed && !isNew {
			if unlisted == 0 {
				continue // owed (js as it was): sent in a next frame
			}
			unlisted--
		}
		switch {
		case !changed:
			if listed && js.full == nil { // listed again: clients have this view
				js.full = full
			}
		case isNew || js.state != j.State || now.Sub(js.fullSent) >= jobFullGap || (listed && js.full == nil):
			js.sum, js.fullSent, js.state, js.done = sum, now, j.State, j.DoneUnits
			if listed {
				js.full = full
				h.st.jobsJSON = nil // the list for new clients is made again
			}
			if !isNew {
				writeEvent(&body, "job", full)
			}
		case js.done != j.DoneUnits:
			js.done = j.DoneUnits
			pe := progressEvent{
				ID: j.ID, State: j.State, DoneUnits: j.DoneUnits, TotalUnits: j.TotalUnits,
				Progress: v.Progress, ComputeSeconds: v.ComputeSeconds,
			}
			if j.Kind == compute.KindPi {
				if pr, err := h.jobs.PiResult(j.ID); err == nil {
					pe.Pi = &pr
				}
			}
			writeEvent(&body, "progress", mustJSON(pe))
		}
		if js.sum == sum { // clients have this view: settled may skip it while hd.Rev holds
			js.rev, js.namesGen = hd.Rev, h.st.namesGen
		} else {
			js.rev = 0 // a view is owed (a progress event went out instead): not settled
		}
		if changed || !j.State.Finished() || js.cursor < js.next { // a finished job's chunks may still be owed
			h.tickChunks(&body, now, init && isNew, j, js)
		}
	}
	for id := range h.st.jobs {
		if !seen[id] {
			delete(h.st.jobs, id)
		}
	}
	if total := len(seen); total != h.st.total {
		h.st.total = total
		writeEvent(b, "jobcount", jobCountJSON(total))
	}
	if key.String() != h.st.listKey { // a listed job added or removed: the list
		h.st.listKey, h.st.order = key.String(), order
		h.st.jobsJSON = nil
		writeEvent(b, "jobs", h.listJSON())
	}
	h.tickWork(b, now, init, revs+uint64(len(seen)))
	b.Write(body.Bytes())
}

// viewSum is the hash of a job view clients were sent: a job beyond the listed ones keeps it
// instead of the view. Never 0 (jobSent.sum 0: no view sent).
func viewSum(view []byte) uint64 { return maphash.Bytes(headSeed, view) | 1 }

// listJSON is the job list for new clients and for a "jobs" event: the views clients were last
// sent of the newest maxListedJobs jobs, newest first. It is made again only when one of them or
// the list changed.
func (h *hub) listJSON() []byte {
	if h.st.jobsJSON != nil {
		return h.st.jobsJSON
	}
	var list bytes.Buffer
	list.WriteByte('[')
	for i, id := range h.st.order {
		if i > 0 {
			list.WriteByte(',')
		}
		list.Write(h.st.jobs[id].full)
	}
	list.WriteByte(']')
	h.st.jobsJSON = list.Bytes()
	return h.st.jobsJSON
}

// settled reports whether the job of head j is as it was last sent and will not change by
// itself: finished, its view's revision (JobHead.Rev) and the node names the same as when
// clients got that view, and no chunk of its history owed. Its view is then not read or made
// again. (A finished job may still change: an audit leased before a cancel is answered after
// it, a failed node's results are requeued in done jobs; its revision changes then.)
func (js *jobSent) settled(j compute.JobHead, namesGen uint64) bool {
	return js != nil && js.sum != 0 && js.rev != 0 && j.State.Finished() && js.state == j.State &&
		js.rev == j.Rev && js.namesGen == namesGen && js.cursor >= js.next
}

// JobHeadSource is optional for a JobBackend: with it the event stream's poller reads every
// job's head at each frame, and the whole view (Job) only of those that changed since it was
// last sent; without it, every job's view (Jobs). node.Node implements it.
type JobHeadSource interface {
	// JobHeads lists every job's head in submission order, as Jobs lists the jobs.
	JobHeads() []compute.JobHead
}

// NodeWorkSource is optional for a JobBackend: with it the event stream sends a "work" event, each
// node's contribution summed over every job (listed or not), which the page shows as a node's
// work done; without it the page sums the listed jobs' views. node.Node implements it.
type NodeWorkSource interface {
	// NodeWork lists each node's contribution summed over every job, by node ID.
	NodeWork() []compute.NodeContribution
}

// tickWork sends a "work" event when a job changed since the sums were last read (revs, the
// jobs' revisions summed) and, but for the first, at most every statusMinorGap: summing walks
// every job.
func (h *hub) tickWork(b *bytes.Buffer, now time.Time, init bool, revs uint64) {
	if h.work == nil || (h.st.workJSON != nil && (revs == h.st.workRevs || now.Sub(h.st.workRead) < statusMinorGap)) {
		return
	}
	h.st.workRevs, h.st.workRead = revs, now
	w := h.work.NodeWork()
	if w == nil {
		w = []compute.NodeContribution{}
	}
	if wj := mustJSON(w); !bytes.Equal(wj, h.st.workJSON) {
		h.st.workJSON = wj
		if !init {
			writeEvent(b, "work", wj)
		}
	}
}

// jobHeads reads the jobs' heads, in submission order: from JobHeads if the backend has it;
// else from Jobs, whose views it returns too (by ID), so that none is read twice.
func (h *hub) jobHeads() ([]compute.JobHead, map[string]compute.Job) {
	if hs, ok := h.jobs.(JobHeadSource); ok {
		return hs.JobHeads(), nil
	}
	jobs := h.jobs.Jobs()
	heads := make([]compute.JobHead, len(jobs))
	full := make(map[string]compute.Job, len(jobs))
	for i, j := range jobs {
		heads[i] = headOf(j)
		full[j.ID] = j
	}
	return heads, full
}

// headOf is a job's head, its revision a hash of the whole job (for a backend without JobHeads).
func headOf(j compute.Job) compute.JobHead {
	rev := maphash.Bytes(headSeed, mustJSON(j)) | 1 // never 0: jobSent.rev 0 means a view is owed
	return compute.JobHead{ID: j.ID, SubmittedAt: j.SubmittedAt, State: j.State, Rev: rev}
}

// headSeed seeds headOf's hashes.
var headSeed = maphash.MakeSeed()

// tickChunks sends a job's newly accepted chunks. When the hub starts (skip) it only moves the
// job's cursor to the present: a client reads the past with GET …/chunks.
func (h *hub) tickChunks(b *bytes.Buffer, now time.Time, skip bool, j compute.Job, js *jobSent) {
	if h.chunks != nil {
		n := maxChunksPerFrame
		if skip {
			n = 0
		}
		p, err := h.chunks.Chunks(j.ID, js.cursor, n)
		switch {
		case err != nil:
			return
		case skip:
			js.cursor = p.Next
			return
		case len(p.Records) == 0:
			return
		}
		js.cursor, js.next = p.Records[len(p.Records)-1].Seq+1, p.Next
		writeEvent(b, "chunks", encodeChunks(j.ID, p, now))
		return
	}
	if j.Kind != compute.KindMandelbrot {
		return
	}
	acc, err := h.jobs.AcceptedRanges(j.ID)
	if err != nil {
		return
	}
	fresh := compute.NewRangeSet(acc...)
	for _, r := range js.acc.Ranges() {
		fresh.Remove(r)
	}
	js.acc = compute.NewRangeSet(acc...)
	if skip || fresh.Count() == 0 {
		return
	}
	p := compute.ChunkPage{}
	for _, r := range fresh.Ranges() {
		p.Records = append(p.Records, compute.ChunkRecord{Range: r, Committed: now})
	}
	writeEvent(b, "chunks", encodeChunks(j.ID, p, now))
}

// encodeChunks writes a chunks event (and the body of GET …/chunks):
//
//	{"job":"…","first":F,"next":N,"sent":ms,"nodes":["peer ID",…],
//	 "chunks":[[seq,start,end,node,compute_seconds,committed_ms,hits],…]}
//
// node indexes "nodes" (−1 and seq −1 when the node gives no history), times are Unix ms.
func encodeChunks(job string, p compute.ChunkPage, now time.Time) []byte {
	b := make([]byte, 0, 64+len(p.Records)*40)
	b = append(b, `{"job":`...)
	b = strconv.AppendQuote(b, job)
	b = append(b, `,"first":`...)
	b = strconv.AppendUint(b, p.First, 10)
	b = append(b, `,"next":`...)
	b = strconv.AppendUint(b, p.Next, 10)
	b = append(b, `,"sent":`...)
	b = strconv.AppendInt(b, now.UnixMilli(), 10)
	ix := map[string]int{}
	var nodes []string
	for _, r := range p.Records {
		if _, ok := ix[r.Node]; !ok && r.Node != "" {
			ix[r.Node] = len(nodes)
			nodes = append(nodes, r.Node)
		}
	}
	b = append(b, `,"nodes":`...)
	b = append(b, mustJSON(nonNilStrings(nodes))...)
	b = append(b, `,"chunks":[`...)
	for i, r := range p.Records {
		if i > 0 {
			b = append(b, ',')
		}
		seq, ni := int64(r.Seq), -1
		if r.Node == "" {
			seq = -1
		} else {
			ni = ix[r.Node]
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, r.Range.Start, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, r.Range.End, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(ni), 10)
		b = append(b, ',')
		b = strconv.AppendFloat(b, r.ComputeSeconds, 'g', 4, 64)
		b = append(b, ',')
		b = strconv.AppendInt(b, r.Committed.UnixMilli(), 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, r.Hits, 10)
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Bounds of GET /api/v1/jobs/{id}/chunks.
const (
	defaultChunkPage = 5000
	maxChunkPage     = 20000
)

// jobChunks serves a job's chunk history: ?from=seq (default 0), ?limit=n (default 5000, at
// most 20000). A client pages on with from = the answer's next while chunks come back. A node
// without history (no ChunkSource) answers an empty page with X-Hydra-History: none.
func (s *server) jobChunks(cs ChunkSource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if cs == nil { // an empty history, said so in a header: the UI then draws what events bring
			w.Header().Set("X-Hydra-History", "none")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_ = writeStalled(w, encodeChunks(r.PathValue("id"), compute.ChunkPage{}, time.Now()))
			return
		}
		q := r.URL.Query()
		from, limit := uint64(0), defaultChunkPage
		if v := q.Get("from"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, "from: "+strconv.Quote(clip(v))+" is not a chunk sequence number (0, 1, …)")
				return
			}
			from = n
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxChunkPage {
				writeError(w, http.StatusBadRequest, "limit: "+strconv.Quote(clip(v))+" is not a number from 1 to "+strconv.Itoa(maxChunkPage))
				return
			}
			limit = n
		}
		id := r.PathValue("id")
		p, err := cs.Chunks(id, from, limit)
		if errors.Is(err, compute.ErrNoSuchJob) { // or not applied here yet (JobFinder): look again
			if _, ok := s.job(w, r); !ok {
				return
			}
			p, err = cs.Chunks(id, from, limit)
		}
		if err != nil {
			s.jobError(w, id, "chunks", err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_ = writeStalled(w, encodeChunks(id, p, time.Now())) // up to 20,000 chunks: a client that stops reading lets go of it
	}
}
