package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A second node started on a data directory in use is a configuration error (exit 78) that
// says so, and it changes nothing in the directory: the running node's result store stays.
// Recover is refused the same way. Once the first node stopped, the directory is free.
func TestDataDirInUseIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	first := newTestNode(t, dir, "first", nil)
	first.start(t)
	before, err := os.Stat(filepath.Join(dir, "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}

	second, err := New(context.Background(), testConfig(dir, "second"))
	if err == nil {
		second.Close()
		t.Fatal("a second node started on a data directory in use")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second node: %v (%T); want a *ConfigError saying the directory is in use", err, err)
	}
	after, err := os.Stat(filepath.Join(dir, "jobs.db"))
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the running node's result store was replaced (%v)", err)
	}
	if _, err := Recover(dir, nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("recover on a running node's directory: %v; want a *ConfigError saying it is in use", err)
	}

	first.stop(t)
	again := newTestNode(t, dir, "again", nil)
	again.start(t)
}
