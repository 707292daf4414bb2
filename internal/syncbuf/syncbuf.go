// Package syncbuf is a bytes.Buffer that several goroutines may write and read at once: the
// writer of a logger that a test reads while the code under test logs from its own goroutines.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes under a lock; the zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
