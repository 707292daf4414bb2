//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package localport

// claim claims nothing where there are no POSIX record locks (Windows):
// only the once-per-process rule and the check for a bound port hold.
func claim(p int) bool { return true }
