package wasm

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
)

// vmKB reads a /proc/self/status field in kB (VmRSS, VmHWM).
func vmKB(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte(field+":")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestMaxModuleMemory measures the memory (peak RSS: Go heap, machine code, compiler tables)
// that validating a module costs the process per byte of code, as the node validates every
// upload in its own process, and checks that a module at MaxModuleBytes stays within a few
// hundred MB: a Raspberry Pi has 1–4 GiB. The cap was 256 MiB, whose validation took a node to
// 1.7 GB (and the compute child running the module to 2.7 GB).
func TestMaxModuleMemory(t *testing.T) {
	size, budget := 8<<20, int64(400<<20)
	if raceEnabled {
		// The race detector slows the compiler tenfold and shadows every byte of heap: the
		// same per-byte check on a smaller module, with the detector's memory allowed for.
		size, budget = 1<<20, 8*budget
	}
	code := codeModule(size, 4096)
	e := engine(t, Config{CacheDir: t.TempDir()}) // as the node's validator: it writes the cache
	// A warm-up compile, so the engine's one-off costs are not counted per byte.
	if err := e.Validate(context.Background(), codeModule(64<<10, 4096)); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil { // resets VmHWM
		t.Fatalf("reset peak RSS: %v", err)
	}
	base := vmKB(t, "VmRSS")
	if err := e.Validate(context.Background(), code); err != nil {
		t.Fatal(err)
	}
	peak := vmKB(t, "VmHWM")
	perByte := float64(peak-base) * 1024 / float64(len(code))
	atMax := int64(perByte * MaxModuleBytes)
	t.Logf("validating %d bytes of code: peak RSS +%d MiB, %.1f bytes per byte: %d MiB for a module at the cap (%d MiB)",
		len(code), (peak-base)>>10, perByte, atMax>>20, MaxModuleBytes>>20)
	if atMax > budget {
		t.Fatalf("validating a module at the cap (%d MiB) would take %d MiB of memory, more than %d MiB",
			MaxModuleBytes>>20, atMax>>20, budget>>20)
	}
}
