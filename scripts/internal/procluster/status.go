//go:build linux

package procluster

// GET /api/v1/status: polling every node at once, agreement and stability.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Status is the part of a node's GET /api/v1/status the benchmarks read. It is decoded here
// rather than with the node's own types so that a benchmark can measure an older build.
type Status struct {
	Self struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"self"`
	ClusterID string `json:"cluster_id"`
	Leader    string `json:"leader"`
	Term      uint64 `json:"term"`
	Nodes     []struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Role   string `json:"role"`
		Online bool   `json:"online"`
	} `json:"nodes"`
}

// Members returns how many listed nodes are in the raft configuration (leader, voters and
// non-voters).
func (s *Status) Members() int {
	n := 0
	for _, x := range s.Nodes {
		if x.Role == "leader" || x.Role == "voter" || x.Role == "nonvoter" {
			n++
		}
	}
	return n
}

// Voters returns the number of voters (leader included) and how many of them are online.
func (s *Status) Voters() (all, online int) {
	for _, x := range s.Nodes {
		if x.Role == "leader" || x.Role == "voter" {
			all++
			if x.Online {
				online++
			}
		}
	}
	return
}

// RoleOf returns the role of the node with peer ID id as s lists it, or "".
func (s *Status) RoleOf(id string) string {
	for _, x := range s.Nodes {
		if x.ID == id {
			return x.Role
		}
	}
	return ""
}

// statusClient gives up after a second: a node that takes longer to say who leads counts as
// not answering, which is what the failover figures measure.
var statusClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

// GetStatus asks the node at url (see Proc.HTTPURL) for its status, and returns how long the
// answer took (also on error).
func GetStatus(ctx context.Context, url string) (*Status, time.Duration, error) {
	t := time.Now()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/api/v1/status", nil)
	if err != nil {
		return nil, 0, fmt.Errorf("status request: %w", err)
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return nil, time.Since(t), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, time.Since(t), err
	}
	if resp.StatusCode != 200 {
		return nil, time.Since(t), fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, time.Since(t), err
	}
	return &s, time.Since(t), nil
}

// Answer is one node's reply to a Poll: its status (nil on error) and the answer's latency.
type Answer struct {
	St  *Status
	Lat time.Duration
	Err error
}

// Poll asks every node in ps for its status at once (one round, not one node after the other,
// so a round is a snapshot) and returns the answers in the order of ps.
func Poll(ps []*Proc) []Answer {
	out := make([]Answer, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, lat, err := GetStatus(context.Background(), p.HTTPURL)
			out[i] = Answer{st, lat, err}
		}()
	}
	wg.Wait()
	return out
}

// Agreement reports whether every node in ps answered and all name the same non-empty leader,
// which is one of ps, and the same non-empty cluster_id; term is the highest term reported.
func Agreement(ps []*Proc, as []Answer) (leader, cid string, term uint64, ok bool) {
	for i, a := range as {
		if a.Err != nil || a.St.Leader == "" || a.St.ClusterID == "" {
			return "", "", 0, false
		}
		if i == 0 {
			leader, cid = a.St.Leader, a.St.ClusterID
		}
		if a.St.Leader != leader || a.St.ClusterID != cid {
			return "", "", 0, false
		}
		if a.St.Term > term {
			term = a.St.Term
		}
	}
	for _, p := range ps {
		if p.ID == leader {
			return leader, cid, term, true
		}
	}
	return "", "", 0, false
}

// Describe renders the answers of ps, one indented line a node, for the message of a benchmark
// that gives up: who each node thinks leads, its term, cluster and view of the members.
func Describe(c *Cluster, ps []*Proc, as []Answer) string {
	var b strings.Builder
	for i, a := range as {
		if a.Err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", ps[i].Name, a.Err)
			continue
		}
		v, on := a.St.Voters()
		fmt.Fprintf(&b, "  %s: leader=%s term=%d cluster=%.12s members=%d voters=%d (online %d)\n",
			ps[i].Name, c.Name(a.St.Leader), a.St.Term, a.St.ClusterID, a.St.Members(), v, on)
	}
	return b.String()
}

// WaitStable polls c every 100 ms until every node agrees on leader, term and cluster_id, the
// leader lists all of them as members with exactly want voters, all online (and every node
// online), and that has held for hold; it returns that leader and term. After deadline it
// returns an error that describes the last round of answers.
func WaitStable(c *Cluster, want int, hold, deadline time.Duration) (leader string, term uint64, err error) {
	end := time.Now().Add(deadline)
	var since time.Time
	var last []Answer
	var prevL string
	var prevT uint64
	for time.Now().Before(end) {
		as := Poll(c.Nodes)
		last = as
		l, _, t, ok := Agreement(c.Nodes, as)
		if ok {
			var ls *Status
			for i, p := range c.Nodes {
				if p.ID == l {
					ls = as[i].St
				}
			}
			v, on := ls.Voters()
			online := 0
			for _, x := range ls.Nodes {
				if x.Online && x.Role != "none" {
					online++
				}
			}
			sameTerm := true
			for _, a := range as {
				if a.St.Term != t {
					sameTerm = false
				}
			}
			ok = sameTerm && ls.Members() == len(c.Nodes) && v == want && on == want && online == len(c.Nodes)
		}
		if ok && l == prevL && t == prevT && !since.IsZero() {
			if time.Since(since) >= hold {
				return l, t, nil
			}
		} else if ok {
			since, prevL, prevT = time.Now(), l, t
		} else {
			since, prevL, prevT = time.Time{}, "", 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", 0, fmt.Errorf("no stable cluster (all agree, %d members, %d voters online) within %v; last views:\n%s", len(c.Nodes), want, deadline, Describe(c, c.Nodes, last))
}
