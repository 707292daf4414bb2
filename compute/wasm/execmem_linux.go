package wasm

import "golang.org/x/sys/unix"

// execMemoryAllowed makes one page writable, then executable, as wazero's compiler does with a
// module's code (mmap read-write, mprotect read-execute), and says whether the kernel allowed it.
func execMemoryAllowed() bool {
	b, err := unix.Mmap(-1, 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return true // not the refusal asked about: leave the answer to wazero
	}
	defer func() { _ = unix.Munmap(b) }()
	return unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC) == nil
}
