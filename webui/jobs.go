package webui

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// JobBackend is what the job routes need from a node, besides Backend.
// node.Node implements it; tests use a fake. Reads answer from the node's
// own replica.
type JobBackend interface {
	// SubmitJob submits a spec that already passed Validate; the node assigns
	// the ID and time and commits the job through raft.
	SubmitJob(ctx context.Context, spec compute.JobSpec) (compute.Job, error)
	// Jobs lists every job this replica knows, in submission order, in a
	// slice of its own (the caller may reorder it).
	Jobs() []compute.Job
	// Job returns one job.
	Job(id string) (compute.Job, bool)
	// CancelJob stops a job; accepted results stay readable. Errors wrapping
	// compute.ErrNoSuchJob answer 404, compute.ErrJobFinished 409,
	// ErrForbidden 403, ErrUnavailable 503.
	CancelJob(ctx context.Context, id string) error
	// DeleteJob forgets a job and its results (hydra rm); same errors.
	DeleteJob(ctx context.Context, id string) error
	// PiResult is a π job's result over its accepted samples.
	PiResult(id string) (compute.PiResult, error)
	// MandelChunk reads a Mandelbrot job's stored rows around row: the
	// accepted chunk holding it (its range and counts, row-major), or when
	// row is not accepted yet the gap up to the next accepted chunk with nil
	// counts. Rendering walks an image this way, one chunk in memory
	// (compute.JobState.MandelChunk).
	MandelChunk(id string, row uint64) (compute.Range, []uint32, error)
	// AcceptedRanges are the job's accepted work units (rows for
	// Mandelbrot), for partial results.
	AcceptedRanges(id string) ([]compute.Range, error)
}

// JobFinder is optional for a JobBackend: FindJob looks a job up as Job does, but a job this
// node's replica does not hold may have been submitted through another node a moment ago (its
// submit committed, not applied here yet), so before it answers compute.ErrNoSuchJob the
// replica catches up with what the cluster had committed when it was called (node.Node: a read
// barrier, bounded). An error wrapping ErrUnavailable (the leader did not answer) answers 503
// with Retry-After. The routes that read one job (its view, result, image, chunks) use it when
// the backend has it, so that a user who submits through one node reads the job through any
// other at once (read-your-writes across nodes).
type JobFinder interface {
	FindJob(ctx context.Context, id string) (compute.Job, error)
}

// readTimeout bounds how long a read route waits for a job this replica does not hold yet
// (JobFinder).
const readTimeout = 10 * time.Second

// ErrUnavailable is for backends: an error wrapping it (no leader known, the
// node is shutting down) answers 503, so a client knows a retry may succeed.
var ErrUnavailable = errors.New("temporarily unavailable")

// NotAppliedError is for SubmitJob: the cluster committed the job, but this node's replica had
// not applied it when the request's deadline came. The submit succeeded, so the API answers
// 202 Accepted with Job (the job as it was submitted, queued) and its Location, never 500: a
// client that took the answer for a failure and submitted again would add a second job.
type NotAppliedError struct {
	Job compute.Job // the committed job as submitted
	Err error       // why the wait ended
}

func (e *NotAppliedError) Error() string {
	return fmt.Sprintf("job %s is committed, but this node has not applied it yet: %v", e.Job.ID, e.Err)
}

func (e *NotAppliedError) Unwrap() error { return e.Err }

// writeTimeout bounds how long a write route waits for raft.
const writeTimeout = 30 * time.Second

func (s *server) registerJobs(mux *http.ServeMux) {
	write := func(h http.HandlerFunc) http.Handler { return s.needJobs(s.auth(h)) }
	read := func(h http.HandlerFunc) http.Handler { return s.needJobs(h) }
	mux.Handle("POST /api/v1/jobs", write(s.submitJob))
	mux.Handle("GET /api/v1/jobs", read(s.listJobs))
	mux.Handle("GET /api/v1/jobs/{id}", read(s.getJob))
	mux.Handle("POST /api/v1/jobs/{id}/cancel", write(s.cancelJob))
	mux.Handle("DELETE /api/v1/jobs/{id}", write(s.deleteJob))
	mux.Handle("GET /api/v1/jobs/{id}/result", read(s.jobResult))
	mux.Handle("GET /api/v1/jobs/{id}/result.raw", read(stallLimited(s.jobRaw)))
	mux.Handle("GET /api/v1/jobs/{id}/result.png", read(stallLimited(s.jobPNG)))
}

// needJobs answers 503 when the node serves no jobs (Config.Jobs is nil).
func (s *server) needJobs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Jobs == nil {
			writeError(w, http.StatusServiceUnavailable, "this node does not serve jobs")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) submitJob(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// A submit answers every refusal 400 with what and why, a body over its limit included
		// (the jobs API's contract since it began, which clients check): the other routes that
		// read a body answer that case 413 (writeTooLarge), with the same message.
		msg := "read body: " + err.Error()
		if m, ok := tooLargeText(err, "request body"); ok {
			msg = m
		}
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	spec, err := DecodeJobRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	code := http.StatusCreated
	j, err := s.cfg.Jobs.SubmitJob(ctx, spec)
	if na := (*NotAppliedError)(nil); errors.As(err, &na) && na.Job.ID != "" {
		// Committed: a success, though a read from this node may not find the job for a while.
		s.cfg.Logger.Warn("submit committed but not applied here yet", "job", na.Job.ID, "err", na.Err)
		j, err, code = na.Job, nil, http.StatusAccepted
	}
	if err != nil {
		s.jobError(w, "", "submit", err)
		return
	}
	w.Header().Set("Location", jobPath(j.ID))
	var names map[string]string // a job just submitted has rarely run yet: no status to build
	if len(j.Nodes) > 0 {
		names = s.nodeNames()
	}
	WriteJSON(w, code, newJobView(j, names))
}

// MaxJobsPage bounds the jobs of one page of GET /api/v1/jobs?limit=N: a
// cluster may hold up to 100,000 jobs (max-jobs), too many for one answer a
// client means to read.
const MaxJobsPage = 10000

// jobsQuery is a GET /api/v1/jobs query: at most limit jobs (0: all), of the
// states listed (none: every state), starting after the job before names in
// the list's order (newest first).
type jobsQuery struct {
	limit  int
	states map[compute.JobState]bool
	before string
}

// parseJobsQuery validates GET /api/v1/jobs's parameters. token is no
// parameter of the list but the read credential any read may carry under
// read-auth (mayRead), so it is let through.
func parseJobsQuery(q url.Values) (jobsQuery, error) {
	var jq jobsQuery
	for name := range q {
		if name != "limit" && name != "state" && name != "before" && name != "token" {
			return jq, fmt.Errorf("unknown parameter %q (limit, state, before)", name)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxJobsPage {
			return jq, fmt.Errorf("limit %q: want a whole number from 1 to %d", v, MaxJobsPage)
		}
		jq.limit = n
	}
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			switch js := compute.JobState(strings.TrimSpace(st)); js {
			case compute.StateQueued, compute.StateRunning, compute.StateDone, compute.StateCancelled, compute.StateFailed:
				if jq.states == nil {
					jq.states = map[compute.JobState]bool{}
				}
				jq.states[js] = true
			default:
				return jq, fmt.Errorf("state %q: want queued, running, done, cancelled or failed", st)
			}
		}
	}
	jq.before = q.Get("before")
	if len(jq.before) > maxJobIDLen {
		return jq, fmt.Errorf("before: a job ID is at most %d bytes", maxJobIDLen)
	}
	return jq, nil
}

// maxJobIDLen bounds a job ID given as a cursor (IDs are 16 hex digits).
const maxJobIDLen = 64

// newestFirst orders xs, given in submission order, as the job list shows them: by submission
// time, the latest first, and among equal times the last submitted first. The list API and the
// event stream's "jobs" share it.
func newestFirst[T any](xs []T, submitted func(T) time.Time) {
	slices.Reverse(xs)
	slices.SortStableFunc(xs, func(a, b T) int { return submitted(b).Compare(submitted(a)) })
}

// listJobs answers GET /api/v1/jobs: every job, newest first, or a page of
// them (limit, state, before); a page that stops short of the end carries a
// Link header (rel="next") to the next one.
func (s *server) listJobs(w http.ResponseWriter, r *http.Request) {
	jq, err := parseJobsQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	jobs := s.cfg.Jobs.Jobs()
	newestFirst(jobs, func(j compute.Job) time.Time { return j.SubmittedAt })
	if jq.before != "" {
		i := slices.IndexFunc(jobs, func(j compute.Job) bool { return j.ID == jq.before })
		if i < 0 {
			writeError(w, http.StatusNotFound, fmt.Sprintf("before: no job %q (deleted since the last page?): list again from the start", jq.before))
			return
		}
		jobs = jobs[i+1:]
	}
	names := s.nodeNames()
	views := make([]JobView, 0, min(len(jobs), cmp.Or(jq.limit, len(jobs))))
	for _, j := range jobs {
		if jq.states != nil && !jq.states[j.State] {
			continue
		}
		if jq.limit > 0 && len(views) == jq.limit { // j is selected too: there is a next page
			next := url.Values{"limit": {strconv.Itoa(jq.limit)}, "before": {views[len(views)-1].ID}}
			if st := r.URL.Query()["state"]; len(st) > 0 {
				next["state"] = st
			}
			w.Header().Set("Link", fmt.Sprintf("</api/v1/jobs?%s>; rel=\"next\"", next.Encode()))
			break
		}
		views = append(views, newJobView(j, names))
	}
	WriteJSON(w, http.StatusOK, views)
}

func (s *server) getJob(w http.ResponseWriter, r *http.Request) {
	j, ok := s.job(w, r)
	if !ok {
		return
	}
	WriteJSON(w, http.StatusOK, newJobView(j, s.nodeNames()))
}

func (s *server) cancelJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	if err := s.cfg.Jobs.CancelJob(ctx, id); err != nil {
		s.jobError(w, id, "cancel", err)
		return
	}
	j, ok := s.cfg.Jobs.Job(id)
	if !ok { // removed in between
		WriteJSON(w, http.StatusOK, map[string]string{"id": id, "state": string(compute.StateCancelled)})
		return
	}
	WriteJSON(w, http.StatusOK, newJobView(j, s.nodeNames()))
}

func (s *server) deleteJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	if err := s.cfg.Jobs.DeleteJob(ctx, id); err != nil {
		s.jobError(w, id, "delete", err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

func (s *server) jobResult(w http.ResponseWriter, r *http.Request) {
	j, ok := s.job(w, r)
	if !ok {
		return
	}
	v := ResultView{ID: j.ID, Kind: j.Kind, State: j.State, Complete: j.State == compute.StateDone}
	switch j.Kind {
	case compute.KindPi:
		res, err := s.cfg.Jobs.PiResult(j.ID)
		if err != nil {
			s.jobError(w, j.ID, "result", err)
			return
		}
		if !isFinite(res.Estimate) || !isFinite(res.StdError) { // no samples yet: JSON has no NaN
			res.Estimate, res.StdError = 0, 0
		}
		v.PiResult, v.TotalSamples = &res, j.TotalUnits
	case compute.KindMandelbrot:
		acc, err := s.cfg.Jobs.AcceptedRanges(j.ID)
		if err != nil {
			s.jobError(w, j.ID, "result", err)
			return
		}
		m := j.Spec.Mandel
		v.MandelSummary = &MandelSummary{
			Width: m.Width, Height: m.Height, MaxIter: m.MaxIter,
			DoneRows: unitsOf(acc), TotalRows: uint64(m.Height), Accepted: nonNil(acc),
			Links: ResultLinks{Raw: jobPath(j.ID) + "/result.raw", PNG: jobPath(j.ID) + "/result.png"},
		}
	case compute.KindWasm:
		if !s.wasmResult(w, j, &v) {
			return
		}
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("job %s has no result this node can show (kind %q)", j.ID, j.Kind))
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// mandelJob looks up a Mandelbrot job and its accepted rows for the raw and
// PNG routes, answering the error itself when it cannot.
func (s *server) mandelJob(w http.ResponseWriter, r *http.Request) (compute.Job, uint64, bool) {
	j, ok := s.job(w, r)
	if !ok {
		return j, 0, false
	}
	if j.Kind != compute.KindMandelbrot || j.Spec.Mandel == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("job %s is a %s job: it has no image (see %s/result)", j.ID, j.Kind, jobPath(j.ID)))
		return j, 0, false
	}
	acc, err := s.cfg.Jobs.AcceptedRanges(j.ID)
	if err != nil {
		s.jobError(w, j.ID, "result", err)
		return j, 0, false
	}
	return j, unitsOf(acc), true
}

func (s *server) imageHeaders(w http.ResponseWriter, j compute.Job, doneRows uint64, contentType, ext string) {
	m := j.Spec.Mandel
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", "hydra-"+safeFileName(j.ID)+ext))
	h.Set("X-Hydra-Width", strconv.Itoa(m.Width))
	h.Set("X-Hydra-Height", strconv.Itoa(m.Height))
	h.Set("X-Hydra-Max-Iter", strconv.Itoa(m.MaxIter))
	h.Set("X-Hydra-Done-Rows", strconv.FormatUint(doneRows, 10))
	h.Set("X-Hydra-State", string(j.State))
}

// jobRaw serves the counts as W×H little-endian uint32, row-major, top row
// first; ?rows=A-B serves rows [A, B) only. Rows not accepted yet are 0
// (X-Hydra-Done-Rows says how many are).
func (s *server) jobRaw(w http.ResponseWriter, r *http.Request) {
	rows, err := parseRows(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	j, done, ok := s.mandelJob(w, r)
	if !ok {
		return
	}
	m := j.Spec.Mandel
	if rows == (compute.Range{}) {
		rows = compute.Range{Start: 0, End: uint64(m.Height)}
	}
	if rows.End > uint64(m.Height) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("rows: %d-%d goes past the image's %d rows", rows.Start, rows.End, m.Height))
		return
	}
	size := rows.Len() * uint64(m.Width) * 4
	if size > smallRawBytes && r.Method != http.MethodHead { // the UI's row fetches never wait
		if !s.render.tryAcquire() {
			busy(w, cap(s.render.slots))
			return
		}
		defer s.render.release()
	}
	s.imageHeaders(w, j, done, "application/octet-stream", ".raw")
	w.Header().Set("X-Hydra-Rows", fmt.Sprintf("%d-%d", rows.Start, rows.End))
	w.Header().Set("Content-Length", strconv.FormatUint(size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rr := newRowReader(s.cfg.Jobs, j.ID, m.Width)
	buf := make([]byte, 0, max(64<<10, 4*m.Width))
	for y := rows.Start; y < rows.End; y++ {
		counts, err := rr.row(y)
		if err != nil {
			// The status is sent: a short body (Content-Length) tells the client.
			s.cfg.Logger.Warn("raw rows", "job", j.ID, "row", y, "err", err)
			return
		}
		if len(buf)+4*len(counts) > cap(buf) {
			if _, err := w.Write(buf); err != nil {
				return // the client went away
			}
			buf = buf[:0]
		}
		for _, c := range counts {
			buf = binary.LittleEndian.AppendUint32(buf, c)
		}
	}
	_, _ = w.Write(buf)
}

// parseRows reads ?rows=A-B (rows [A, B), A < B); the zero Range when absent.
func parseRows(q url.Values) (compute.Range, error) {
	if !q.Has("rows") {
		return compute.Range{}, nil
	}
	v := q.Get("rows")
	a, b, ok := strings.Cut(v, "-")
	start, err1 := strconv.ParseUint(a, 10, 32)
	end, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || start >= end {
		return compute.Range{}, fmt.Errorf("rows: %q is not a row range A-B with A < B (rows A to B−1, top row 0)", clip(v))
	}
	return compute.Range{Start: start, End: end}, nil
}

func (s *server) jobPNG(w http.ResponseWriter, r *http.Request) {
	j, done, ok := s.mandelJob(w, r)
	if !ok {
		return
	}
	s.servePNG(w, r, j, done)
}

// job looks up the {id} of the request, answering 404 when it is unknown (JobFinder: once this
// replica has caught up with the cluster's commits) and 503 when that cannot be told now.
func (s *server) job(w http.ResponseWriter, r *http.Request) (compute.Job, bool) {
	id := r.PathValue("id")
	if j, ok := s.cfg.Jobs.Job(id); ok {
		return j, true
	}
	f, ok := s.cfg.Jobs.(JobFinder)
	if !ok || len(id) > compute.MaxIDLen { // no such ID can have been submitted
		writeError(w, http.StatusNotFound, "no such job: "+strconv.Quote(clip(id)))
		return compute.Job{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	j, err := f.FindJob(ctx, id)
	if err != nil {
		s.jobError(w, id, "read", err)
		return compute.Job{}, false
	}
	return j, true
}

// jobError answers a backend error: unknown job 404, finished job 409, refused
// by the cluster (ErrForbidden) 403, unavailable 503, the cluster's job cap
// reached 429, another refusal of the cluster's state (ErrConflict) 409, anything
// else 500 (logged with what, the operation). The message is the error's own:
// the route names the operation, and the CLI prefixes its command's name.
func (s *server) jobError(w http.ResponseWriter, id, what string, err error) {
	switch {
	case errors.Is(err, compute.ErrNoSuchJob):
		writeError(w, http.StatusNotFound, "no such job: "+strconv.Quote(clip(id)))
	case errors.Is(err, compute.ErrJobFinished):
		writeError(w, http.StatusConflict, fmt.Sprintf("job %s already finished", clip(id)))
	case errors.Is(err, ErrNoSuchModule), errors.Is(err, ErrBadModule): // the job's module: missing, or not fit for the job
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, compute.ErrTooManyJobs):
		writeError(w, http.StatusTooManyRequests, err.Error())
	default: // refused 403, unavailable 503, conflict 409, the rest 500 (kindError)
		s.kindError(w, what, err, "job", id)
	}
}

// NodeNamer is implemented by a Backend that can name the cluster's nodes
// without building the whole Status (roles, audits, liveness): a job view
// needs only the names, and it is read far more often than the status.
type NodeNamer interface {
	// NodeNames maps node IDs to the names the cluster knows them by.
	NodeNames() map[string]string
}

// nodeNames maps node IDs to names, from NodeNames when the backend has it,
// else from the cluster status.
func (s *server) nodeNames() map[string]string {
	names := map[string]string{}
	if s.cfg.Backend == nil {
		return names
	}
	if nn, ok := s.cfg.Backend.(NodeNamer); ok {
		return nn.NodeNames()
	}
	for _, n := range s.cfg.Backend.Status().Nodes {
		names[n.ID] = n.Name
	}
	return names
}

func jobPath(id string) string { return "/api/v1/jobs/" + url.PathEscape(id) }

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func unitsOf(rs []compute.Range) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Len()
	}
	return n
}

func nonNil(rs []compute.Range) []compute.Range {
	if rs == nil {
		return []compute.Range{}
	}
	return rs
}

// safeFileName keeps the characters of an ID that are safe in a file name.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, clip(s))
}
