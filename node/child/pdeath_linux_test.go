package child

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/internal/procstat"
)

// TestChildDiesWithNode SIGKILLs a node stand-in while its child computes: the child must not
// survive it (Pdeathsig), or it would keep computing on the owner's machine.
func TestChildDiesWithNode(t *testing.T) {
	node := exec.Command(os.Args[0])
	node.Env = append(os.Environ(), childEnv+"=parent")
	out, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = node.Process.Kill(); _ = node.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || !procstat.Running(pid) {
		t.Fatalf("child pid %q: %v", line, err)
	}
	if err := node.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = node.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for procstat.Running(pid) {
		if time.Now().After(deadline) {
			_ = syscallKill(pid)
			t.Fatalf("child %d still runs 10 s after its node was SIGKILLed", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
