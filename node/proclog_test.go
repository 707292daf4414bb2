//go:build unix

package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// Helpers of the system tests that read what node processes logged and
// answered: their slog lines ("chunk done" ranges, owner decisions) and
// their results.

// nodeLogLine is one line of a node's text log.
type nodeLogLine struct {
	at   time.Time
	msg  string
	text string
}

// attr returns the value of key=value in the line ("" if absent),
// unquoting a quoted value.
func (l nodeLogLine) attr(key string) string {
	i := strings.Index(l.text, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := l.text[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		q, err := strconv.QuotedPrefix(v)
		if err != nil {
			return ""
		}
		s, _ := strconv.Unquote(q)
		return s
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}

// readNodeLog parses the lines of p's log that slog's text handler wrote
// (those starting with time=).
func readNodeLog(t *testing.T, p *proc) []nodeLogLine {
	t.Helper()
	f, err := os.Open(p.logPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []nodeLogLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		ts, ok := strings.CutPrefix(text, "time=")
		if !ok {
			continue
		}
		ts, _, _ = strings.Cut(ts, " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		l := nodeLogLine{at: at, text: text}
		l.msg = l.attr("msg")
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// loggedChunk is a "chunk done" line: the range a node computed (for a
// chunk stopped by a pause, its finished prefix), when it logged it and
// when it began computing it.
type loggedChunk struct {
	at, began time.Time
	r         compute.Range
}

// chunksLogged returns the chunks p logged as done for job, in log order.
func chunksLogged(t *testing.T, p *proc, job string) []loggedChunk {
	t.Helper()
	var out []loggedChunk
	for _, l := range readNodeLog(t, p) {
		if l.msg != "chunk done" || l.attr("job") != job {
			continue
		}
		var r compute.Range
		if _, err := fmt.Sscanf(l.attr("range"), "[%d,%d)", &r.Start, &r.End); err != nil || r.Empty() {
			t.Fatalf("%s: unreadable chunk line %q", p.name, l.text)
		}
		took, err := time.ParseDuration(l.attr("took"))
		if err != nil {
			t.Fatalf("%s: chunk line without its duration: %q", p.name, l.text)
		}
		out = append(out, loggedChunk{at: l.at, began: l.at.Add(-took), r: r})
	}
	return out
}

// checkPiExact checks the π result on every live node against the
// definition (computed here on every core: hits of disjoint ranges add up).
func checkPiExact(t *testing.T, ps []*proc, id string, seed, samples uint64) {
	t.Helper()
	want, _ := compute.PiHitsParallel(seed, 0, samples, runtime.NumCPU(), nil)
	for _, p := range alive(ps) {
		var r compute.PiResult
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+id+"/result", nil, &r)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if r.Hits != want || r.Samples != samples {
			t.Fatalf("%s: hits %d of %d, want %d of %d", p.name, r.Hits, r.Samples, want, samples)
		}
	}
}
