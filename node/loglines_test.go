package node

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/internal/syncbuf"
)

// A node's log names each line's component once: consensus's loggers add
// their own ("raft", "consensus", "raft-transport"), so a line such as
// "cluster initialized" must not read "component=raft component=consensus",
// and raft's configuration is printed, not its format string.
func TestNodeLogLinesNameOneComponent(t *testing.T) {
	var logs syncbuf.Buffer
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	n.start(t)
	waitFor(t, 60*time.Second, "the cluster initialized", func() error {
		if !strings.Contains(logs.String(), "cluster initialized") {
			return errors.New("no \"cluster initialized\" in the log yet")
		}
		return nil
	})
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if c := strings.Count(line, "component="); c > 1 {
			t.Errorf("log line names %d components: %s", c, line)
		}
		if strings.Contains(line, "%+v") {
			t.Errorf("log line carries a raw format string: %s", line)
		}
	}
}
