package child

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/wire"
)

// The test binary is its own compute child: with childEnv set, TestMain runs Main (or a
// misbehaving stand-in) instead of the tests.
const childEnv = "HYDRA_CHILD_TEST"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "child":
		os.Exit(Main(os.Stdin, os.Stdout, os.Stderr))
	case "garbage": // a valid hello, then a frame that is not a message
		b, _ := encodeMessage(message{kind: kindHello, h: header{Hello: &Hello{Protocol: protocolVersion, PID: os.Getpid()}}})
		_ = wire.WriteFrame(os.Stdout, b)
		_, _ = bufio.NewReader(os.Stdin).ReadByte() // the run message
		_ = wire.WriteFrame(os.Stdout, []byte("R\x05{nope"))
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	case "mute": // a valid hello, then silence however long a task runs (a frozen child)
		b, _ := encodeMessage(message{kind: kindHello, h: header{Hello: &Hello{Protocol: protocolVersion, PID: os.Getpid()}}})
		_ = wire.WriteFrame(os.Stdout, b)
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	case "silent": // exits without a hello
		os.Exit(3)
	case "parent": // a node stand-in: starts a child on a long task, prints its pid, waits
		r, err := Start(context.Background(), Config{Exe: os.Args[0], Env: []string{childEnv + "=child"}, CPUs: 1})
		if err != nil {
			os.Exit(4)
		}
		go func() {
			_, _ = r.Run(context.Background(), Chunk{ID: 1, Spec: piSpec(1<<45, 1), Range: compute.Range{Start: 0, End: 1 << 40}}, nil)
		}()
		h, _ := r.Hello()
		fmt.Println(h.PID)
		select {}
	}
	os.Exit(m.Run())
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func startRunner(t *testing.T, mode string, cpus, limit int) *Runner {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{Exe: os.Args[0], Env: []string{childEnv + "=" + mode}, CPUs: cpus, CPULimit: limit, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func piSpec(samples, seed uint64) compute.JobSpec {
	return compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: samples, Seed: seed}}
}

func mandelSpec(w, h, maxIter int, cx, cy, span float64) compute.JobSpec {
	return compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: w, Height: h, CenterX: cx, CenterY: cy, Span: span, MaxIter: maxIter}}
}

// rawChild starts the test binary as a child with raw pipes, for tests that speak the wire
// protocol themselves.
func rawChild(t *testing.T) (stdin io.WriteCloser, stdout *bufio.Reader, cmd *exec.Cmd) {
	t.Helper()
	cmd = exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=child")
	cmd.Stderr = testWriter{t}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return in, bufio.NewReader(out), cmd
}

func readMsg(t *testing.T, r *bufio.Reader) message {
	t.Helper()
	b, err := wire.ReadFrame(r, maxChildFrame)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
