package compute

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// peakRSS returns the process's peak resident set (VmHWM) in MiB after
// resetting it when reset is true (Linux: /proc/self/clear_refs); -1
// elsewhere.
func peakRSS(reset bool) float64 {
	if reset {
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		return 0
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// BenchmarkSnapshot10kJobs: a state of 10,000 finished π jobs written to a
// snapshot file (streamed from the store) and restored from it, with the
// time and the process's peak RSS of each step:
//
//	go test -run XXX -bench Snapshot10k -benchtime 1x ./compute/
func BenchmarkSnapshot10kJobs(b *testing.B) {
	st := newTestState(b)
	for i := range 10_000 {
		id := fmt.Sprintf("job-%05d", i)
		st.mustApply(b, Submit{ID: id, Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 64, Seed: uint64(i)}}})
		st.mustApply(b, Results{Time: t0, Items: []ChunkResult{piChunk(id, uint64(i), Range{0, 64}, "n")}})
	}
	path := filepath.Join(b.TempDir(), "snap")
	for b.Loop() {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		peakRSS(true)
		start := time.Now()
		if err := st.Snapshot(f); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		snapT, snapRSS := time.Since(start), peakRSS(false)
		fi, _ := os.Stat(path)

		r := newTestState(b)
		f, err = os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		peakRSS(true)
		start = time.Now()
		if err := r.Restore(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
		restT, restRSS := time.Since(start), peakRSS(false)
		if n := len(r.Jobs()); n != 10_000 {
			b.Fatalf("%d jobs restored", n)
		}
		b.ReportMetric(float64(snapT.Milliseconds()), "snapshot-ms")
		b.ReportMetric(float64(restT.Milliseconds()), "restore-ms")
		b.ReportMetric(snapRSS, "snapshot-peak-rss-MiB")
		b.ReportMetric(restRSS, "restore-peak-rss-MiB")
		b.Logf("10,000 jobs: snapshot %d bytes in %v (peak RSS %.0f MiB), restore in %v (peak RSS %.0f MiB)",
			fi.Size(), snapT.Round(time.Millisecond), snapRSS, restT.Round(time.Millisecond), restRSS)
	}
}
