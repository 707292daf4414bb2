package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// minFreeToStart is the free space a node waits for on its data directory's file system
// before it opens its state. A committed raft entry that cannot be stored (the disk is full)
// stops the node (consensus.LocalFailure), and a restart replays the log up to that entry
// again: on a disk still full it stopped again, and a supervisor that restarts a failed node
// (packaging/hydra.service) restarted it every few seconds for good. The node waits instead,
// taking no work, and starts once space is back. 64 MiB holds many raft entries (each at most
// a few MiB) and the growth of the result store.
const minFreeToStart = 64 << 20

// diskSpacePoll is how often a node waiting for free space looks again.
const diskSpacePoll = time.Second

func (c Config) minFree() uint64 {
	if c.minFreeBytes > 0 {
		return c.minFreeBytes
	}
	return minFreeToStart
}

// waitForDiskSpace returns once dir's file system has min bytes free for this user, or ctx
// ends (SIGTERM). Where free space cannot be read it does not wait. Meanwhile it serves the
// waiting view (node/diskwait.go) on ln, the node's HTTP listener, so that `hydra status`, the
// UI and health checks say why the node is not up instead of finding nothing; it hands ln
// back open, for the node's own server (ln may be nil: nothing is served).
func waitForDiskSpace(ctx context.Context, dir string, min uint64, ln net.Listener, log *slog.Logger) (err error) {
	free, err := freeBytes(dir)
	if err != nil || free >= min {
		return nil
	}
	var view *diskWaitServer
	api := ""
	if ln != nil {
		view = serveDiskWait(ln, newDiskWaitView(dir, free, min), log)
		api = localURL(ln.Addr())
		writeWaitingAPIURL(dir, api, log)
	}
	defer func() {
		if serr := view.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	log.Error("disk full: the node waits for free space on its data directory before it starts (it takes no work meanwhile, then replays its raft log; its HTTP address answers 503 with the reason)",
		"dir", dir, "free_bytes", free, "needed_bytes", min, "api", api)
	t := time.NewTicker(diskSpacePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("--data %s: waiting for free space (disk full: %d bytes free, %d needed): %w", dir, free, min, ctx.Err())
		case <-t.C:
		}
		free, err = freeBytes(dir)
		switch {
		case err != nil:
			log.Warn("cannot read the free space any more: starting", "dir", dir, "err", err)
			return nil
		case free >= min:
			log.Info("disk space is back: starting", "dir", dir, "free_bytes", free)
			return nil
		}
		view.update(newDiskWaitView(dir, free, min))
	}
}

// writeWaitingAPIURL writes DATA/api-url for `hydra status --data` while the node waits for
// space, unless it already names url (the usual case: a fixed --http). On a disk too full for
// even that, the old file stays; the node writes it again once started.
func writeWaitingAPIURL(dir, url string, log *slog.Logger) {
	if old, err := os.ReadFile(filepath.Join(dir, APIURLFile)); err == nil && strings.TrimSpace(string(old)) == url {
		return
	}
	if err := writeAPIURL(dir, url); err != nil {
		log.Warn("cannot write api-url while waiting for disk space", "err", err)
	}
}
