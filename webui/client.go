package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Client calls a node's HTTP API; the CLI's client commands use it.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:7070
	Token   string // API token for writes; may be empty for reads
	HTTP    *http.Client
}

// NewClient returns a Client for the API at baseURL.
func NewClient(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Timeout: 60 * time.Second, CheckRedirect: keepMethod}}
}

// keepMethod is the Client's redirect policy: a redirect that would turn a write into a GET (301,
// 302 or 303 to a POST or DELETE: net/http's rule, as browsers do) ends the request with an error
// naming where it was sent, instead of following it. Followed, a submit through a proxy that
// redirects http:// to https:// became a GET of the job list, answered 200, and the command
// failed decoding a list as a job (or a delete "succeeded" doing nothing). A redirect that keeps
// the method (307, 308) and any redirect of a read is followed, at most 10.
func keepMethod(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	if first := via[0]; req.Method != first.Method {
		return fmt.Errorf("%s %s was redirected to %s, as a %s: pass that address as --api", first.Method, first.URL.Redacted(), req.URL.Redacted(), req.Method)
	}
	return nil
}

// APIError is a non-2xx answer from the API, with the server's message.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// MaxAnswer bounds the answer Do reads into memory: far above the largest the API gives to Do's
// callers (a page of jobs, a status of many nodes, the demo's picture), so that a server that
// sends without end (a wrong --api, a stream) ends the command with an error at once instead of
// taking a gigabyte of a small board's memory. Results of any size go through Download.
const MaxAnswer = 64 << 20

// Do sends method path with body (JSON-encoded when not nil) and decodes a
// JSON answer into out (when not nil), or hands it over as it is into a *[]byte; answers
// larger than MaxAnswer are an error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var enc []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		enc = b
	}
	var resp *http.Response
	start := time.Now()
	for try := 1; ; try++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(enc) // whole again for each try
		}
		req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		if resp, err = c.HTTP.Do(req); err != nil {
			return fmt.Errorf("%s %s: %w", method, c.BaseURL+path, err)
		}
		if !retryLater(ctx, req, resp, try, start) {
			break
		}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(data) > MaxAnswer {
		return fmt.Errorf("%s %s: the answer passes %d MiB, more than any of the API's (is --api this node's address?)", method, c.BaseURL+path, MaxAnswer>>20)
	}
	if resp.StatusCode/100 != 2 {
		return answerError(resp, data)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Retries of a read the node asks to repeat (see retryLater).
const (
	// MaxRetryWait is the longest Retry-After a read is retried after: the API's "no leader right
	// now" (RetryAfter) and "render slots busy" ask for 2 s. A longer one is a state that lasts
	// (a node waiting for disk space asks for 5 s): its answer, which says why, is the command's.
	MaxRetryWait = 3 * time.Second
	// maxRetryFor bounds the time spent retrying one read: then the last answer is the command's.
	maxRetryFor = 10 * time.Second
	// maxTries bounds the attempts at one read (a Retry-After of 0 asks for no wait at all).
	maxTries = 10
)

// retryLater reports whether req, answered resp on its try'th attempt (the first sent at start),
// is to be sent again, after waiting as long as the answer's Retry-After asks. Only reads are: a
// GET or HEAD answered 503 (no leader right now: an election under way) or 429 (all render slots
// busy) with a Retry-After of at most MaxRetryWait, for at most maxRetryFor, and only while ctx
// leaves time for the wait. Without it, 'hydra job ID' during a leader's failover printed
// "temporarily unavailable" where the same command a second later answers. A write is never
// repeated here: whether a 503'd submit committed is the caller's to judge (a second one would be
// a second job). resp's body is closed when it is to be retried.
func retryLater(ctx context.Context, req *http.Request, resp *http.Response, try int, start time.Time) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead || try >= maxTries ||
		resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
		return false
	}
	wait, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now())
	if !ok || wait > MaxRetryWait || time.Since(start)+wait > maxRetryFor {
		return false
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		return false // the answer now, not a timeout later
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // the connection is reused
	_ = resp.Body.Close()
	return true
}

// retryAfter parses a Retry-After header (RFC 9110 §10.2.3: seconds, or an HTTP date) as the
// wait from now; ok is false for none or a malformed one.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	if h == "" {
		return 0, false
	}
	if s, err := strconv.ParseUint(h, 10, 32); err == nil {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// maxErrorExcerpt bounds the part of a non-API error body an APIError quotes.
const maxErrorExcerpt = 200

// answerError is the APIError of a non-2xx answer: the API's own message when the body is its
// JSON error. Anything else — a proxy's error page, another web server found at a wrong --api —
// becomes one short line (an HTML page's title, or the first line of the text, clipped), so that
// a command prints one clear line and not a whole page.
func answerError(resp *http.Response, data []byte) *APIError {
	var ae apiError
	if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
		return &APIError{Status: resp.StatusCode, Msg: ae.Error}
	}
	text := strings.TrimSpace(string(data))
	if strings.Contains(resp.Header.Get("Content-Type"), "html") || strings.HasPrefix(text, "<") {
		msg := "not an answer of the Hydra API: an HTML page"
		if t := htmlTitle(text); t != "" {
			msg += " titled " + strconv.Quote(excerpt(t))
		}
		return &APIError{Status: resp.StatusCode, Msg: msg + " (is the URL right, or a proxy in the way?)"}
	}
	if text == "" {
		return &APIError{Status: resp.StatusCode, Msg: http.StatusText(resp.StatusCode)}
	}
	line, _, _ := strings.Cut(text, "\n")
	return &APIError{Status: resp.StatusCode, Msg: excerpt(line)}
}

// htmlTitle is the text of an HTML page's <title>, or "".
func htmlTitle(page string) string {
	low := strings.ToLower(page)
	i := strings.Index(low, "<title>")
	if i < 0 {
		return ""
	}
	rest := page[i+len("<title>"):]
	j := strings.Index(strings.ToLower(rest), "</title>")
	if j < 0 {
		return ""
	}
	return strings.Join(strings.Fields(rest[:j]), " ")
}

// excerpt clips s to maxErrorExcerpt bytes (on a rune boundary) and drops control characters.
func excerpt(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= maxErrorExcerpt {
		return s
	}
	cut := maxErrorExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Status fetches GET /api/v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.Do(ctx, http.MethodGet, "/api/v1/status", nil, &s)
	return s, err
}
