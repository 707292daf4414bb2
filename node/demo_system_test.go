//go:build linux

package node

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/procstat"
)

// `hydra demo` killed outright (SIGKILL, the OOM killer, a crash: no chance to stop its nodes
// as it does on Ctrl-C) takes its nodes and their compute children with it. Before, they ran
// on in the background, computing, holding their ports and the demo's directory.
func TestSystem_DemoKilledTakesItsNodes(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(hydraBinary(t), "demo", "--nodes", "3", "--samples", "1e13", "--width", "160",
		"--dir", filepath.Join(dir, "nodes"), "-o", filepath.Join(dir, "demo.png"))
	cmd.Env = append(os.Environ(), compute.KernelsEnv+"=portable")
	// A pipe of our own, not StdoutPipe: Wait would close that one under the reader.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	formed := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var seen strings.Builder
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Cluster formed:") {
				break
			}
		}
		formed <- seen.String()
		for sc.Scan() { // drain, so that the demo never blocks on its output
		}
	}()
	select {
	case s := <-formed:
		if !strings.Contains(s, "Cluster formed:") {
			t.Fatalf("hydra demo ended before its cluster formed:\n%s", s)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("hydra demo's cluster did not form within 2 minutes")
	}
	procs := procstat.Descendants(cmd.Process.Pid)
	if len(procs) < 3 {
		t.Fatalf("hydra demo runs %d processes, want its 3 nodes and their compute children", len(procs))
	}
	t.Cleanup(func() {
		for _, p := range procs {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, 10*time.Second, "the killed demo's nodes to end", func() error {
		var left []string
		for _, p := range procs {
			if procstat.Running(p) {
				left = append(left, fmt.Sprint(p))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%d of %d processes still run: %s", len(left), len(procs), strings.Join(left, " "))
		}
		return nil
	})
}
