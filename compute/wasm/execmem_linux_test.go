package wasm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"golang.org/x/sys/unix"
)

// prSetMDWE and mdweRefuseExecGain are prctl's memory-deny-write-execute switch (Linux 6.3), the
// kernel's own form of systemd's MemoryDenyWriteExecute=yes: memory that was not executable may
// not become so.
const (
	prSetMDWE          = 65
	mdweRefuseExecGain = 1
	mdweChildEnv       = "HYDRA_TEST_MDWE_CHILD"
)

// TestCompilerRefusedUnderMDWE: a process that may not make memory executable is seen as one whose
// modules run in the interpreter (the node warns at start), and one without such a policy is not.
// The policy cannot be lifted once set, so it is set in a child: this test binary run again.
func TestCompilerRefusedUnderMDWE(t *testing.T) {
	if os.Getenv(mdweChildEnv) == "1" {
		if err := unix.Prctl(prSetMDWE, mdweRefuseExecGain, 0, 0, 0); err != nil {
			fmt.Printf("mdwe-unsupported: %v\n", err)
			return
		}
		fmt.Printf("refused=%v\n", CompilerRefused())
		// The module still runs, in the interpreter.
		m := compile(t, engine(t, Config{}), "sum.wasm")
		res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: 0, End: 100, Workers: 1})
		fmt.Printf("ran=%v,%d,%d\n", err, res.Done, res.Value)
		return
	}
	compiles := runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64"
	if CompilerRefused() {
		t.Fatalf("CompilerRefused in a process with no W^X policy (GOARCH %s)", runtime.GOARCH)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCompilerRefusedUnderMDWE$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), mdweChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	switch s := string(out); {
	case strings.Contains(s, "mdwe-unsupported"):
		t.Logf("this kernel has no PR_SET_MDWE (before Linux 6.3): only the answer without a policy was checked\n%s", s)
	case !strings.Contains(s, fmt.Sprintf("refused=%v\n", compiles)):
		t.Fatalf("under PR_SET_MDWE, want refused=%v (GOARCH %s):\n%s", compiles, runtime.GOARCH, s)
	case !strings.Contains(s, "ran=<nil>,100,4950\n"):
		t.Fatalf("under PR_SET_MDWE, the module did not run in the interpreter:\n%s", s)
	}
}
