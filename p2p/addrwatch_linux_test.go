package p2p

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// deletedAddrs reads the address an RTM_DELADDR message removes, prefers IFA_LOCAL to
// IFA_ADDRESS, skips other messages and attributes of a wrong length, and returns nothing for
// bytes that are not netlink messages.
func TestDeletedAddrs(t *testing.T) {
	msg := func(typ uint16, attrs ...[]byte) []byte {
		body := make([]byte, unix.SizeofIfAddrmsg)
		for _, a := range attrs {
			body = append(body, a...)
		}
		b := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
		binary.NativeEndian.PutUint32(b[0:4], uint32(unix.SizeofNlMsghdr+len(body)))
		binary.NativeEndian.PutUint16(b[4:6], typ)
		return append(b, body...)
	}
	attr := func(typ uint16, v []byte) []byte {
		b := make([]byte, 4, 4+len(v)+3)
		binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(v)))
		binary.NativeEndian.PutUint16(b[2:4], typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	var b []byte
	b = append(b, msg(unix.RTM_NEWADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 0, 1}))...)
	b = append(b, msg(unix.RTM_DELADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 0, 2}))...)
	b = append(b, msg(unix.RTM_DELADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 0, 3}), attr(unix.IFA_LOCAL, []byte{10, 0, 0, 4}))...)
	b = append(b, msg(unix.RTM_DELADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 5}))...)
	got := deletedAddrs(b)
	if len(got) != 2 || got[0].String() != "10.0.0.2" || got[1].String() != "10.0.0.4" {
		t.Fatalf("deletedAddrs = %v, want [10.0.0.2 10.0.0.4]", got)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, b[:7], b[:len(b)-3]} {
		_ = deletedAddrs(bad) // no panic
	}
}
