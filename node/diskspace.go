package node

import (
	"context"
	"errors"
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

// Serve makes a node from cfg and runs it until ctx ends, as `hydra node` does. A node that
// stopped because its disk filled up (a committed entry it could not store: Run's error is a
// full file system) is made again in this process: New waits for free space, answering on its
// HTTP address why, and the node replays its log once space is back, so a full disk costs a
// machine its place in the cluster only while it lasts, with or without a supervisor. Restarts
// come at least restartBackoff apart, doubling up to a minute while they keep failing within
// minutes of the start (a write larger than the space New waits for would fail again).
// A start that fails on a full disk (New's error) is tried again alike. Every other stop, and a
// stop of ctx while New waits (nil), ends Serve.
func Serve(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	wait := restartBackoff
	for {
		began := time.Now()
		n, err := New(ctx, cfg)
		started := err == nil
		if started {
			err = n.Run(ctx)
		} else if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil // stopped while it waited to start: a clean stop
		}
		if ctx.Err() != nil || !diskFull(err) {
			return err
		}
		if time.Since(began) > 10*time.Minute {
			wait = restartBackoff
		}
		what := "the node stopped at a result it could not store"
		if !started {
			// New waits for minFreeToStart, but a start can need more (a snapshot's results to
			// restore) or find the file system out of inodes with bytes free.
			what = "the node could not start on it"
		}
		cfg.Logger.Error("disk full: "+what+"; it starts again in this process once space is back (it waits for it, taking no work)",
			"dir", cfg.DataDir, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// restartBackoff is Serve's first wait before it makes a node stopped by a full disk again.
const restartBackoff = time.Second
