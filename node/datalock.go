package node

import (
	"errors"
	"os"
	"path/filepath"
)

// dataLockName is the file in the data directory whose lock a running node, or a hydra
// recover, holds for as long as it uses the directory (DATA/lock).
const dataLockName = "lock"

// errDataLocked is what lockFile returns when another process holds the lock.
var errDataLocked = errors.New("data directory locked")

// lockDataDir takes the data directory's lock before anything in it is read or changed: a
// second node started on a directory in use would otherwise remove the running node's result
// store and upload scratch files, start a libp2p host with its identity, and only then fail,
// with exit code 1 and bbolt's bare "timeout" (the raft state's lock), which a service manager
// restarts for ever. It is a configuration error instead (exit 78) that says what to do. The
// kernel drops the lock when the process ends, however it ends; release drops it sooner.
func lockDataDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, dataLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, configErr("--data %s: lock: %v", dir, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errDataLocked) {
			return nil, configErr("--data %s: in use by another running hydra node (%s is locked): stop it first, or give this node its own --data", dir, path)
		}
		return nil, configErr("--data %s: lock %s: %v", dir, path, err)
	}
	return func() { f.Close() }, nil // closing the only descriptor drops the lock
}
