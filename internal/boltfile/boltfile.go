// Package boltfile opens bbolt files so that a damaged file is an error that names the file
// and says what to do, never a crash. bbolt panics on some damage it meets while opening (a
// freelist page that is not one, a page id past the end of the file) and may even fault on
// its memory map; Guard turns both into a *DamagedError.
package boltfile

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// DamagedError says that a bolt file could not be opened because it is damaged (bbolt
// panicked or faulted reading it, or refused it as invalid or failing its checksum). Remedy
// tells the user what to do about this file.
type DamagedError struct {
	Path   string
	Cause  string
	Remedy string
}

func (e *DamagedError) Error() string {
	msg := fmt.Sprintf("%s is damaged (%s)", e.Path, e.Cause)
	if e.Remedy != "" {
		msg += ": " + e.Remedy
	}
	return msg
}

// Guard runs open (which opens the bolt file at path, directly or through a library such as
// raft-boltdb) and turns a panic or a memory fault inside it, and bbolt's own "invalid" and
// "checksum" errors, into a *DamagedError with remedy. Other errors are returned as they are.
func Guard(path, remedy string, open func() error) (err error) {
	old := debug.SetPanicOnFault(true) // a bad mmap access panics (recoverable) instead of killing the process
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Path: path, Cause: fmt.Sprintf("bbolt: %v", r), Remedy: remedy}
		}
	}()
	err = open()
	if errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrChecksum) || errors.Is(err, bolt.ErrVersionMismatch) {
		return &DamagedError{Path: path, Cause: err.Error(), Remedy: remedy}
	}
	return err
}

// Open is bolt.Open under Guard.
func Open(path string, mode os.FileMode, opts *bolt.Options, remedy string) (*bolt.DB, error) {
	var db *bolt.DB
	err := Guard(path, remedy, func() error {
		var err error
		db, err = bolt.Open(path, mode, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return db, nil
}
