package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// UploadModule stores a WebAssembly module (POST /api/v1/modules, the raw bytes as
// application/wasm) and returns its content address.
func (c *Client) UploadModule(ctx context.Context, code []byte) (ModuleInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/modules", bytes.NewReader(code))
	if err != nil {
		return ModuleInfo{}, fmt.Errorf("upload module: %w", err)
	}
	req.Header.Set("Content-Type", "application/wasm")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return ModuleInfo{}, fmt.Errorf("upload module to %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ModuleInfo{}, fmt.Errorf("upload module: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return ModuleInfo{}, answerError(resp, data)
	}
	var info ModuleInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return ModuleInfo{}, fmt.Errorf("upload module: decode answer: %w", err)
	}
	return info, nil
}

// SubmitJob submits a job (POST /api/v1/jobs) and returns its view.
func (c *Client) SubmitJob(ctx context.Context, spec compute.JobSpec) (JobView, error) {
	body, err := EncodeJobRequest(spec)
	if err != nil {
		return JobView{}, fmt.Errorf("encode job: %w", err)
	}
	var v JobView
	err = c.Do(ctx, http.MethodPost, "/api/v1/jobs", json.RawMessage(body), &v)
	return v, err
}

// Jobs lists the jobs, newest first (GET /api/v1/jobs).
func (c *Client) Jobs(ctx context.Context) ([]JobView, error) {
	var vs []JobView
	err := c.Do(ctx, http.MethodGet, "/api/v1/jobs", nil, &vs)
	return vs, err
}

// JobsQuery selects jobs from GET /api/v1/jobs: at most Limit (0: all), of
// States (none: any), after the job Before in the list's order (newest first).
type JobsQuery struct {
	Limit  int
	States []compute.JobState
	Before string
}

// JobsWhere lists the jobs q selects, newest first (GET /api/v1/jobs with
// limit, state and before): a cluster may hold many thousands of jobs.
func (c *Client) JobsWhere(ctx context.Context, q JobsQuery) ([]JobView, error) {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	for _, st := range q.States {
		v.Add("state", string(st))
	}
	if q.Before != "" {
		v.Set("before", q.Before)
	}
	path := "/api/v1/jobs"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var vs []JobView
	err := c.Do(ctx, http.MethodGet, path, nil, &vs)
	return vs, err
}

// Job fetches one job (GET /api/v1/jobs/{id}).
func (c *Client) Job(ctx context.Context, id string) (JobView, error) {
	var v JobView
	err := c.Do(ctx, http.MethodGet, jobPath(id), nil, &v)
	return v, err
}

// CancelJob cancels a job and returns its view after the cancel.
func (c *Client) CancelJob(ctx context.Context, id string) (JobView, error) {
	var v JobView
	err := c.Do(ctx, http.MethodPost, jobPath(id)+"/cancel", struct{}{}, &v)
	return v, err
}

// TrustReset clears a node's failed audits and quarantine (POST
// /api/v1/nodes/{id}/trust/reset); node is a peer ID or a name. It returns
// the node's peer ID.
func (c *Client) TrustReset(ctx context.Context, node string) (string, error) {
	var v struct {
		Node string `json:"node"`
	}
	err := c.Do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(node)+"/trust/reset", struct{}{}, &v)
	return v.Node, err
}

// DeleteJob deletes a job and its results (DELETE /api/v1/jobs/{id}).
func (c *Client) DeleteJob(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, jobPath(id), nil, nil)
}

// Result fetches a job's result or image summary (GET …/result).
func (c *Client) Result(ctx context.Context, id string) (ResultView, error) {
	var v ResultView
	err := c.Do(ctx, http.MethodGet, jobPath(id)+"/result", nil, &v)
	return v, err
}

// ResultPNG streams a Mandelbrot job's PNG (raw false) or raw counts (raw
// true) into w and returns the answer's headers (X-Hydra-Done-Rows …).
// Unlike Do it reads no whole body into memory and has no overall timeout
// (a 16384² image takes a while): ctx bounds it.
func (c *Client) ResultPNG(ctx context.Context, id string, raw bool, w io.Writer) (http.Header, error) {
	path := jobPath(id) + "/result.png"
	if raw {
		path = jobPath(id) + "/result.raw"
	}
	return c.Download(ctx, path, w)
}

// Download GETs path and copies a successful answer's body into w. It has no overall timeout
// (a large image takes a while: ctx bounds it), but a node that stalls ends it with an error, so
// a hung node cannot hold a command until ctx runs out: no headers for five times the client's
// HTTP timeout (a node may render a large PNG for another request before it answers this one),
// or no byte of the body for the timeout itself (a minute by default).
func (c *Client) Download(ctx context.Context, path string, w io.Writer) (http.Header, error) {
	hc := http.Client{}
	if c.HTTP != nil {
		hc = *c.HTTP
	}
	stall := hc.Timeout
	if stall <= 0 {
		stall = time.Minute
	}
	hc.Timeout = 0
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errNoHeaders := fmt.Errorf("the node sent no answer for %s", 5*stall)
	errStalled := fmt.Errorf("the node sent nothing for %s", stall)
	watchdog := time.AfterFunc(5*stall, func() { cancel(errNoHeaders) })
	defer watchdog.Stop()
	stalled := func(err error) error {
		if cause := context.Cause(ctx); cause == errNoHeaders || cause == errStalled {
			return cause
		}
		return err
	}
	var resp *http.Response
	start := time.Now()
	for try := 1; ; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		if c.Token != "" { // a read, but under read-auth a download needs the credential too
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		if resp, err = hc.Do(req); err != nil {
			return nil, fmt.Errorf("GET %s: %w", c.BaseURL+path, stalled(err))
		}
		if !retryLater(ctx, req, resp, try, start) { // a 503 or 429 with Retry-After, as Do
			break
		}
	}
	defer resp.Body.Close()
	if !watchdog.Stop() { // it fired as the answer came
		return resp.Header, fmt.Errorf("GET %s: %w", path, errNoHeaders)
	}
	watchdog = time.AfterFunc(stall, func() { cancel(errStalled) })
	defer watchdog.Stop()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp.Header, answerError(resp, data)
	}
	if _, err := io.Copy(w, &stallReader{r: resp.Body, t: watchdog, d: stall}); err != nil {
		return resp.Header, fmt.Errorf("GET %s: %w", path, stalled(err))
	}
	return resp.Header, nil
}

// stallReader restarts its watchdog timer at every byte read.
type stallReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(s.d)
	}
	return n, err
}
