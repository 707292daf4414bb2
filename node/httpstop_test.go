package node

import (
	"errors"
	"testing"
	"time"
)

// A node whose HTTP server stops (its listener fails: accept's ENOMEM or ENOBUFS, which
// net/http does not retry) stops, and must say so with an error: `hydra node` then exits with
// 1, which the systemd unit (Restart=on-failure), launchd (KeepAlive SuccessfulExit=false) and
// a container's restart policy restart. Run returned nil, so the node exited with 0 as after a
// SIGTERM, and stayed down. The listener is closed under the server here.
func TestRunFailsWhenItsHTTPServerStops(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", nil)
	ran := make(chan error, 1)
	go func() { ran <- n.Run(t.Context()) }()
	waitFor(t, 30*time.Second, "the node to serve its API", func() error {
		_, err := getStatus(n)
		return err
	})
	if err := n.httpLn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err == nil {
			t.Fatal("Run returned nil after its HTTP server stopped: hydra node would exit with 0 and no supervisor would restart it")
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			t.Fatalf("Run returned a *ConfigError (exit code 78, not restarted): %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after its HTTP server stopped")
	}
}
