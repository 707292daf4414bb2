package compute

import "fmt"

// StorageError is an Apply error caused by this node's payload store (a full or failing disk),
// not by the command: every other replica applies the command, so this one must not go on as
// if it had been refused. Its LocalFailure method tells consensus to stop applying the log
// (consensus.LocalFailure) rather than diverge.
type StorageError struct {
	Op  string // what failed: "results", "delete …"
	Err error
}

func (e *StorageError) Error() string { return fmt.Sprintf("%s: job store: %v", e.Op, e.Err) }

// Unwrap returns the store's error.
func (e *StorageError) Unwrap() error { return e.Err }

// LocalFailure marks the error as this node's fault (see StorageError).
func (e *StorageError) LocalFailure() bool { return true }

// storeFailed notes a failure of this node's store met where it cannot be returned (applyLocked
// fails the command with the first).
func (s *JobStore) storeFailed(op string, err error) {
	if s.storeErr == nil {
		s.storeErr = &StorageError{Op: op, Err: err}
	}
}
