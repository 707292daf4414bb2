package consensus

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/wire"
)

// rss returns the process's resident set (VmRSS) and its peak (VmHWM) in
// MiB; reset first sets the peak to the current resident set (Linux:
// /proc/self/clear_refs). -1 where /proc is not there.
func rss(reset bool) (cur, peak float64) {
	if reset {
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	}
	cur, peak = -1, -1
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return cur, peak
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			cur = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return cur, peak
}

// fileSink is a raft.SnapshotSink on a plain file, as raft's file store
// writes one (without its checksum and metadata).
type fileSink struct{ *os.File }

func (fileSink) ID() string      { return "bench" }
func (s fileSink) Cancel() error { return s.Close() }

// BenchmarkSnapshot100kJobs writes and restores, through the FSM as raft
// does, the job state at the largest max-jobs (MaxMaxJobs finished
// one-chunk jobs, names at their limit, results in a real result store):
// all π jobs ("pi"), and one job in ten a Mandelbrot job with its counts in
// the result store ("mix"). It reports the snapshot's size, the jobs'
// header against its limit, the time of each step, the resident set before
// it and its peak during it:
//
//	go test -run XXX -bench Snapshot100k -benchtime 1x -timeout 30m ./consensus/
func BenchmarkSnapshot100kJobs(b *testing.B) {
	for _, c := range []struct {
		name        string
		mandelEvery int
	}{{"pi", 0}, {"mix", 10}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				snapshotRoundTrip(b, MaxMaxJobs, c.mandelEvery)
			}
		})
	}
}

func snapshotRoundTrip(b *testing.B, count, mandelEvery int) {
	dir := b.TempDir()
	js := openJobs(b, b.TempDir())
	fillJobs(b, js, count, mandelEvery)
	path := filepath.Join(dir, "snap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	before, _ := rss(true)
	start := time.Now()
	snap, err := NewFSM(js).Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	if err := snap.Persist(fileSink{f}); err != nil {
		b.Fatal(err)
	}
	snap.Release()
	snapT := time.Since(start)
	_, snapPeak := rss(false)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	hdr := jobsHeaderSize(b, path)
	// Restore on a node that holds nothing else: the written state is let go.
	js.Close()
	js = nil
	runtime.GC()
	debug.FreeOSMemory()

	restored := openJobs(b, b.TempDir())
	rf, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	rbefore, _ := rss(true)
	start = time.Now()
	if err := NewFSM(restored).Restore(rf); err != nil {
		b.Fatal(err)
	}
	restT := time.Since(start)
	_, restPeak := rss(false)
	if n := finishedJobs(restored); n != count {
		b.Fatalf("%d finished jobs restored, want %d", n, count)
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "snapshot-MiB")
	b.ReportMetric(float64(hdr)/(1<<20), "header-MiB")
	b.ReportMetric(float64(snapT.Milliseconds()), "snapshot-ms")
	b.ReportMetric(float64(restT.Milliseconds()), "restore-ms")
	b.ReportMetric(snapPeak-before, "snapshot-peak-rss-added-MiB")
	b.ReportMetric(restPeak-rbefore, "restore-peak-rss-added-MiB")
	b.Logf("%d jobs: snapshot %d bytes (jobs' header %d bytes, restore accepts 512 MiB) in %v, RSS %.0f MiB before, peak %.0f MiB; restore in %v, RSS %.0f MiB before, peak %.0f MiB",
		count, fi.Size(), hdr, snapT.Round(time.Millisecond), before, snapPeak,
		restT.Round(time.Millisecond), rbefore, restPeak)
}

// jobsHeaderSize reads the length of the job state's JSON header (the part
// restore reads whole, at most 512 MiB) from the snapshot file at path.
func jobsHeaderSize(b *testing.B, path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	skip := func(n uint64) {
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			b.Fatal(err)
		}
	}
	skip(uint64(len(snapshotMagic) + 1))
	n, err := wire.ReadUvarint(r)
	if err != nil {
		b.Fatal(err)
	}
	skip(n + 1 + uint64(len("HYDRAJS")+1)) // the cluster state, the section marker, the job state's magic
	n, err = wire.ReadUvarint(r)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
