package child

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// freezeSettle bounds the wait for a frozen child's group stop. SIGSTOP reaches a thread on a
// CPU by an interrupt within microseconds; a thread that is runnable but starved (the child runs
// at idle priority, the owner keeps every core) runs no user code before it has handled the
// signal, so it writes nothing more even if the kernel has not yet scheduled it to enter the
// stopped state. The group stop therefore normally completes at once, and when it does not,
// this short wait covers the interrupts in flight.
const freezeSettle = 20 * time.Millisecond

// newShmFile creates the anonymous file of the finished-block log (node side).
func newShmFile() (*os.File, error) {
	fd, err := unix.MemfdCreate("hydra-compute-log", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "hydra-compute-log")
	if err := f.Truncate(shmSize); err != nil {
		f.Close()
		return nil, fmt.Errorf("size the compute log: %w", err)
	}
	return f, nil
}

// mapShm maps the log (pages are only allocated where written or read).
func mapShm(f *os.File, write bool) (*shm, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() != shmSize {
		return nil, fmt.Errorf("compute log is %d bytes, want %d", st.Size(), shmSize)
	}
	prot := unix.PROT_READ
	if write {
		prot |= unix.PROT_WRITE
	}
	b, err := unix.Mmap(int(f.Fd()), 0, shmSize, prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the compute log: %w", err)
	}
	return &shm{b: b}, nil
}

// childShm maps the log the node passed (child side), or returns nil.
func childShm() *shm {
	fd, err := strconv.Atoi(os.Getenv(shmEnv))
	if err != nil || fd < 3 || fd > 64 {
		return nil
	}
	f := os.NewFile(uintptr(fd), "hydra-compute-log")
	defer f.Close()
	s, err := mapShm(f, true)
	if err != nil {
		return nil
	}
	return s
}

func (s *shm) unmap() {
	if s != nil {
		_ = unix.Munmap(s.b)
	}
}

// drop releases the pages of the node's view (the data stays in the file for the child).
func (s *shm) drop() {
	if s != nil {
		_ = unix.Madvise(s.b, unix.MADV_DONTNEED)
	}
}

// release frees the file's pages of n counts after Mandelbrot task (child side): the region
// would otherwise keep the largest task's counts in memory while the child idles. It marks the
// task's end first (shm.end): a node that froze the child afterwards would read the freed
// pages as zero counts. madvise takes a page-aligned start and shmPixOff is not one: the page
// the counts share with the records stays.
func (s *shm) release(task, n uint64) {
	if s == nil {
		return
	}
	s.end(task)
	if n == 0 {
		return
	}
	page := uint64(os.Getpagesize())
	start := (uint64(shmPixOff) + page - 1) / page * page
	end := min((uint64(shmPixOff)+n*4+page-1)/page*page, shmSize)
	if start < end {
		if err := unix.Madvise(s.b[start:end], unix.MADV_REMOVE); err != nil {
			fmt.Fprintf(os.Stderr, "hydra compute child: release the counts of task %d: %v\n", task, err)
		}
	}
}

// freeze stops the child at once (SIGSTOP): it computes nothing more, and what it finished is
// in the log. It waits for the group stop up to freezeSettle and returns the child's CPU
// seconds so far.
func (p *proc) freeze() (cpu float64, err error) {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return 0, fmt.Errorf("stop the compute child: %w", err)
	}
	pid := p.cmd.Process.Pid
	stopped := make(chan struct{})
	go func() {
		// WNOWAIT: report, do not reap (exec.Cmd.Wait does); returns on exit too.
		var info unix.Siginfo
		_ = unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT, nil)
		close(stopped)
	}()
	t := time.NewTimer(freezeSettle)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
	}
	return pidCPU(pid)
}

// thaw undoes freeze (the log was of no use: the caller stops the task by message instead).
func (p *proc) thaw() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
}

// pidCPU reads a process's CPU seconds (user + system) from /proc.
func pidCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture Go
// supports.
const clockTicks = 100
