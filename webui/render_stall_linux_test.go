//go:build linux

package webui

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// TestStallLimitedEndsAStuckDownload: a result download whose client stops reading ends once
// stallTimeout passes without progress, so its handler lets go of what it holds (a render slot,
// a render others wait for, a view of the result store); without the limit it waits as long as
// the client keeps the connection open.
func TestStallLimitedEndsAStuckDownload(t *testing.T) {
	defer func(d time.Duration) { stallTimeout = d }(stallTimeout)
	stallTimeout = 300 * time.Millisecond
	ended := make(chan error, 1)
	srv := httptest.NewServer(stallLimited(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		block := make([]byte, 1<<20)
		for range 256 { // 256 MiB: more than any socket buffers hold
			if _, err := w.Write(block); err != nil {
				ended <- err
				return
			}
		}
		ended <- nil
	}))
	defer srv.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /result.bin HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select { // the client reads nothing
	case err := <-ended:
		if err == nil {
			t.Fatal("256 MiB written to a client that reads nothing")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler still writes to a client that stopped reading")
	}
}
