//go:build linux || darwin || freebsd || netbsd || openbsd

package localport

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// childEnv makes the test binary a process that claims ports (TestMain).
const childEnv = "HYDRA_LOCALPORT_CHILD"

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(childEnv)); err == nil {
		// Claim n ports, print them, and hold them until stdin closes.
		for range n {
			p, err := Free()
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println(p)
		}
		fmt.Println("done")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestFreeSkipsPortsAnotherProcessClaimed: a port another process picked
// and has not bound yet is not handed out here (the test binaries of
// several packages run at once and bind their ports seconds later).
func TestFreeSkipsPortsAnotherProcessClaimed(t *testing.T) {
	const n = 20
	child := exec.Command(os.Args[0], "-test.run", "^$")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childEnv, n))
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = child.Wait() })
	claimed := map[int]bool{}
	first := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "done" {
		p, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err != nil {
			t.Fatalf("child: %q", sc.Text())
		}
		if first == 0 {
			first = p
		}
		claimed[p] = true
	}
	if len(claimed) != n {
		t.Fatalf("child claimed %d ports, want %d", len(claimed), n)
	}
	// Walk the same numbers the child did: none of its ports may come out.
	if _, err := Free(); err != nil { // sets the range up
		t.Fatal(err)
	}
	state.Lock()
	state.next = first
	state.Unlock()
	for range 2 * n {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if claimed[p] {
			t.Fatalf("port %d handed out here while another process holds it", p)
		}
	}
}
