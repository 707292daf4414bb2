package cli

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

// nodeClock is an http.RoundTripper that keeps the clock of the node that answered: the
// difference between its HTTP Date header and this machine's clock. Times a node stamps with
// its own clock (a peer's last_seen: when its announcement arrived there) are compared with the
// node's time, not this machine's, which may be hours off (a board without an RTC, a clock set
// by hand). The Date header has a resolution of one second: enough for "5s ago".
type nodeClock struct {
	base http.RoundTripper // nil: http.DefaultTransport
	// refused, if set, is added to an error of a connection refused: the address came from
	// DATA/api-url, which a node that stopped leaves behind (apiFlags.client).
	refused string

	mu     sync.Mutex
	offset time.Duration // the node's clock minus this machine's
	known  bool
}

// RoundTrip sends req and notes the answering node's clock.
func (c *nodeClock) RoundTrip(req *http.Request) (*http.Response, error) {
	base := c.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		if c.refused != "" && errors.Is(err, syscall.ECONNREFUSED) {
			err = fmt.Errorf("%w (%s)", err, c.refused)
		}
		return nil, err // http.Client adds the method and URL
	}
	if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
		// The header is truncated to the second: the node's time was half a second later on average.
		off := d.Add(500 * time.Millisecond).Sub(time.Now())
		c.mu.Lock()
		c.offset, c.known = off, true
		c.mu.Unlock()
	}
	return resp, nil
}

// now is the answering node's time now, or this machine's when no answer carried a valid Date.
func (c *nodeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known {
		return time.Now()
	}
	return time.Now().Add(c.offset)
}

// nodeNow is the time of the node c last heard from (apiFlags.client gives every client a
// nodeClock), for comparing with what the node stamped: a peer's last_seen, a job's submission
// (the cluster's clock, which the answering node keeps within 10 s of: docs/design.md §2, Time).
func nodeNow(c *webui.Client) time.Time {
	if nc, ok := c.HTTP.Transport.(*nodeClock); ok {
		return nc.now()
	}
	return time.Now()
}
