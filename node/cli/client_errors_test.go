package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A client command pointed at something that is not a node's API — a proxy's error page,
// another web server — prints one short line and exits 1, never the page it got.
func TestClientCommandsQuoteForeignErrorsInOneShortLine(t *testing.T) {
	page := "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n" +
		strings.Repeat("<p>upstream closed the connection</p>\n", 500) + "</body></html>\n"
	cases := []struct {
		name, ctype, body string
		code              int
		want              string
	}{
		{"html", "text/html", page, http.StatusBadGateway, `an HTML page titled "502 Bad Gateway"`},
		{"text", "text/plain", "backend exploded\n" + strings.Repeat("stack frame ", 2000), http.StatusInternalServerError, "backend exploded (HTTP 500)"},
		{"empty", "", "", http.StatusServiceUnavailable, "Service Unavailable (HTTP 503)"},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.ctype != "" {
				w.Header().Set("Content-Type", tc.ctype)
			}
			w.WriteHeader(tc.code)
			_, _ = w.Write([]byte(tc.body))
		}))
		for _, args := range [][]string{
			{"status"}, {"jobs"}, {"job", "j1"}, {"result", "j1"}, {"cancel", "j1"},
			{"submit", "pi", "--samples", "1000", "--seed", "1"},
		} {
			code, out, errs := run(append(args, "--api", srv.URL, "--token", "t")...)
			if code != ExitFailure || out != "" {
				t.Errorf("%s %v: exit %d, stdout %q; want exit %d and nothing on stdout", tc.name, args, code, out, ExitFailure)
			}
			if strings.Count(errs, "\n") != 1 || len(errs) > 300 || !strings.Contains(errs, tc.want) {
				t.Errorf("%s %v: stderr (%d bytes) %.300q; want one line under 300 bytes with %q", tc.name, args, len(errs), errs, tc.want)
			}
		}
		srv.Close()
	}
}
