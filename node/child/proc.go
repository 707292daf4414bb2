package child

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/internal/childproc"
	"github.com/hydra-compute/hydra/wire"
)

// proc is one child process as the parent sees it: a writer to its stdin, a reader goroutine
// that decodes its stdout into msgs, a goroutine that logs its stderr, and dead, closed when
// the process has exited (exitErr says how).
type proc struct {
	cmd   *exec.Cmd
	log   *slog.Logger
	hello Hello

	wmu   sync.Mutex
	stdin io.WriteCloser

	msgs      chan message
	dead      chan struct{}
	closing   chan struct{} // closed by kill and shutdown: the reader stops delivering
	closeOnce sync.Once
	exitErr   error
	protoMu   sync.Mutex
	protoErr  error // the child's stream broke (bad frame): why it was killed

	blockMu sync.Mutex // held while blocks is read; unmapped under it once the child is gone
	blocks  *shm       // the child's finished-block log (see shm.go), nil where there is none
}

// closeBlocks unmaps the finished-block log.
func (p *proc) closeBlocks() {
	p.blockMu.Lock()
	defer p.blockMu.Unlock()
	p.blocks.unmap()
	p.blocks = nil
}

// spawn starts the child and waits for its hello.
func spawn(ctx context.Context, cfg Config, log *slog.Logger) (*proc, error) {
	cmd := exec.Command(cfg.Exe, cfg.Args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("compute child: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("compute child: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("compute child: %w", err)
	}
	p := &proc{cmd: cmd, log: log, stdin: stdin, msgs: make(chan message, 64), dead: make(chan struct{}), closing: make(chan struct{})}
	// The finished-block log, so that a pause can freeze the child and still hand in all it
	// finished (Runner.Pause). Without one a pause stops the child by message.
	if f, err := newShmFile(); err == nil {
		if p.blocks, err = mapShm(f, false); err == nil {
			cmd.ExtraFiles = []*os.File{f}
			cmd.Env = append(cmd.Env, shmEnv+"=3")
		}
		defer f.Close() // the child has its copy once started; the mapping keeps ours
	} else {
		log.Debug("compute child: no shared log", "err", err)
	}
	// The child dies with the node, however the node dies, so no orphan keeps computing on the
	// owner's machine (Linux's parent-death signal; elsewhere, and as a second guard, the child
	// exits when stdin, the pipe from the node, reaches its end).
	if err := childproc.Start(cmd, p.dead); err != nil {
		p.closeBlocks()
		return nil, fmt.Errorf("compute child: start %s: %w", cfg.Exe, err)
	}
	p.log = log.With("child_pid", cmd.Process.Pid)
	var readers sync.WaitGroup
	readers.Go(func() { p.readLoop(bufio.NewReaderSize(stdout, 64<<10)) })
	readers.Go(func() { p.logStderr(stderr) })
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		err := cmd.Wait()
		p.protoMu.Lock()
		if p.protoErr != nil {
			err = fmt.Errorf("%v (killed after: %w)", err, p.protoErr)
		}
		p.protoMu.Unlock()
		p.exitErr = err
		close(p.dead)
		p.closeBlocks()
	}()

	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	select {
	case m := <-p.msgs:
		if m.kind != kindHello {
			p.kill()
			return nil, fmt.Errorf("compute child: first message %q, want hello", m.kind)
		}
		p.hello = *m.h.Hello
		return p, nil
	case <-p.dead:
		return nil, fmt.Errorf("compute child: no hello: %w", p.exitError())
	case <-hctx.Done():
		p.kill()
		<-p.dead
		return nil, fmt.Errorf("compute child: no hello: %w", hctx.Err())
	}
}

// readLoop decodes the child's frames. A frame that cannot be read or decoded means the
// stream is broken or the child is not ours: it is killed (Run then reports the error).
func (p *proc) readLoop(r *bufio.Reader) {
	for {
		b, err := wire.ReadFrame(r, maxChildFrame)
		if err == nil {
			var m message
			if m, err = decodeMessage(b); err == nil {
				select {
				case p.msgs <- m:
				case <-p.closing:
				}
				continue
			}
		}
		if !errors.Is(err, io.EOF) {
			p.protoMu.Lock()
			p.protoErr = err
			p.protoMu.Unlock()
			p.log.Error("compute child: broken stream", "err", err)
			p.kill()
		}
		_, _ = io.Copy(io.Discard, r)
		return
	}
}

// logStderr passes the child's stderr to the node's log, a line at a time.
func (p *proc) logStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		p.log.Warn("compute child stderr", "line", sc.Text())
	}
	_, _ = io.Copy(io.Discard, r) // an overlong line: keep draining so the child never blocks
}

func (p *proc) send(m message) error {
	b, err := encodeMessage(m)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return wire.WriteFrame(p.stdin, b)
}

// exitError says how the child ended (after dead is closed).
func (p *proc) exitError() error {
	if p.exitErr == nil {
		return errors.New("compute child exited")
	}
	return fmt.Errorf("compute child exited: %w", p.exitErr)
}

func (p *proc) exited() bool {
	select {
	case <-p.dead:
		return true
	default:
		return false
	}
}

// killed reports whether kill was called: the child is gone or going (SIGKILL), though it may
// not be reaped yet (dead still open). An idle-priority child on a busy machine can take seconds
// to die: a task sent to it meanwhile fails with "exited".
func (p *proc) killed() bool {
	select {
	case <-p.closing:
		return true
	default:
		return false
	}
}

// usable reports whether the child may take a task: it has neither exited nor been killed.
func (p *proc) usable() bool { return !p.exited() && !p.killed() }

func (p *proc) kill() {
	p.closeOnce.Do(func() { close(p.closing) })
	_ = p.cmd.Process.Kill()
}

// shutdown asks the child to exit, kills it if it lingers, and waits until it is gone. The exit
// message is written on a goroutine of its own: a child that reads its stdin no more (stopped,
// wedged) with the pipe full would hold the write, and a wait for it, for ever; the kill after
// exitTimeout ends such a write (the pipe's reader is gone).
func (p *proc) shutdown() {
	go func() {
		_ = p.send(message{kind: kindExit, h: header{}})
		_ = p.stdin.Close()
	}()
	t := time.NewTimer(exitTimeout)
	defer t.Stop()
	select {
	case <-p.dead:
	case <-t.C:
		p.kill()
		<-p.dead
	}
}
