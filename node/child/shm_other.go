//go:build !linux

package child

import (
	"errors"
	"os"
)

// Elsewhere the node stops a task by message only: no shared finished-block log.
var errNoShm = errors.New("no shared compute log on this system")

func newShmFile() (*os.File, error)       { return nil, errNoShm }
func mapShm(*os.File, bool) (*shm, error) { return nil, errNoShm }
func childShm() *shm                      { return nil }
func (s *shm) unmap()                     {}
func (s *shm) drop()                      {}
func (s *shm) release(uint64, uint64)     {}
func (p *proc) freeze() (float64, error)  { return 0, errNoShm }
func (p *proc) thaw()                     {}
