package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// A node waiting for free space stops when it is told to (SIGTERM: its
// context ends) with an error that says why and wraps context.Canceled,
// which the command line takes for a clean stop (exit 0), not a failure.
func TestDiskSpaceWaitEndsWithTheContext(t *testing.T) {
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- waitForDiskSpace(ctx, t.TempDir(), 1<<62, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	waitFor(t, 10*time.Second, "the wait logged", func() error {
		if !strings.Contains(logs.String(), "disk full") {
			return errors.New("no disk full in the log")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for free space") {
			t.Fatalf("err = %v, want one that says it waited for space and wraps context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end with its context")
	}
}

// lockedBuffer collects a node's log lines for a test to wait on.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
