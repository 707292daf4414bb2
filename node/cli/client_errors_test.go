package cli

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/node"
	"github.com/hydra-compute/hydra/webui"
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

// smallModules is a node's module store with a 4 KiB cap that never stores anything.
type smallModules struct{}

func (smallModules) PutModule(context.Context, []byte) (webui.ModuleInfo, error) {
	return webui.ModuleInfo{}, errors.New("a module over the cap reached the store")
}
func (smallModules) Modules() []webui.ModuleInfo                { return nil }
func (smallModules) DeleteModule(context.Context, string) error { return webui.ErrNoSuchModule }
func (smallModules) MaxModuleBytes() int64                      { return 4096 }

// A body over the node's limit — here a module over its cap, the one a command can send — is
// refused 413, and the command prints the API's line naming the limit, as for every other
// refusal: one line, exit 1, and no job submitted.
func TestClientCommandsShowBodyOverItsLimit(t *testing.T) {
	f := &fakeCluster{}
	srv := httptest.NewServer(webui.New(webui.Config{Backend: f, Jobs: f, Modules: smallModules{}}))
	defer srv.Close()
	mod := filepath.Join(t.TempDir(), "big.wasm")
	if err := os.WriteFile(mod, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run("submit", "wasm", "--module", mod, "--items", "10", "--api", srv.URL, "--token", token)
	want := "module larger than 4096 bytes (4 KiB), the most this node takes (HTTP 413)"
	if code != ExitFailure || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, want) {
		t.Fatalf("submit of a module over the cap: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", code, out, errs, ExitFailure, want)
	}
	if len(f.Jobs()) != 0 {
		t.Fatalf("a job was submitted after its module was refused: %+v", f.Jobs())
	}
}

// The web address a node prints at start (http://host:7070/?token=…) does as --api: the
// commands ask the node, not its page, and take the token from the address. With ?token= kept
// in the base, status got the page's HTML and a submit was refused 401.
func TestAPIFlagTakesThePrintedWebAddress(t *testing.T) {
	t.Setenv("HYDRA_TOKEN", "")
	f := &fakeCluster{}
	srv := httptest.NewServer(webui.New(webui.Config{Backend: f, Jobs: f}))
	defer srv.Close()
	api := srv.URL + "/?token=" + token
	empty := t.TempDir() // no node ran here: no token from a data directory
	if code, _, errs := run("status", "--api", api, "--data", empty); code != 0 {
		t.Fatalf("status --api %s: exit %d, stderr %q", api, code, errs)
	}
	if code, _, errs := run("submit", "pi", "--samples", "1000", "--seed", "1", "--api", api, "--data", empty); code != 0 || len(f.Jobs()) != 1 {
		t.Fatalf("submit --api %s: exit %d, stderr %q, %d jobs; want exit 0 and the job", api, code, errs, len(f.Jobs()))
	}
	if code, _, errs := run("status", "--api", "http://", "--data", empty); code != ExitConfig {
		t.Fatalf("status --api http://: exit %d (stderr %q), want %d", code, errs, ExitConfig)
	}
}

// A node that stopped leaves DATA/api-url behind: a command that found the address there and
// meets a connection refused says so and what to do, not only "connection refused" with the
// address again. An address given with --api gets no such guess.
func TestStaleAPIURLSaysTheNodeMayBeDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	_ = l.Close() // nothing listens there now: a refused connection
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, node.APIURLFile), []byte(url+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run("status", "--data", dir)
	if code != ExitFailure || !strings.Contains(errs, "is it running?") || !strings.Contains(errs, filepath.Join(dir, node.APIURLFile)) {
		t.Fatalf("status through a stale api-url: exit %d: %s", code, errs)
	}
	if code, _, errs := run("status", "--api", url); code != ExitFailure || strings.Contains(errs, "is it running?") {
		t.Fatalf("status --api %s: exit %d: %s", url, code, errs)
	}
}

// TestLocalTokenGoesToTheLocalNodeOnly: the admin credential in DATA/api-token is sent to the
// node DATA/api-url names (by --data alone, or an --api naming it: the same port on the same
// host), or to another node of this machine (loopback both), never to another host given with --api, which got this
// cluster's admin credential before: another cluster's node, or whatever a mistyped address
// reached. A credential given (--token, $HYDRA_TOKEN) goes wherever --api says.
func TestLocalTokenGoesToTheLocalNodeOnly(t *testing.T) {
	t.Setenv("HYDRA_TOKEN", "")
	seen := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Get("Authorization"):
		default:
		}
		webui.WriteJSON(w, http.StatusOK, webui.Status{})
	}))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := net.Listen("tcp", "127.0.0.1:0") // another node of this machine
	if err != nil {
		t.Fatal(err)
	}
	otherURL := "http://" + other.Addr().String()
	_ = other.Close()
	remote := "http://192.0.2.1:" + port // the local node's address, on another host than --api's
	for _, tc := range []struct {
		apiURL string   // DATA/api-url
		args   []string // after status --data DIR
		want   string   // the Authorization header sent
	}{
		{srv.URL, nil, "Bearer local"},
		{srv.URL, []string{"--api", srv.URL}, "Bearer local"},
		{srv.URL, []string{"--api", "localhost:" + port}, "Bearer local"},
		{otherURL, []string{"--api", srv.URL}, "Bearer local"},
		{remote, []string{"--api", srv.URL}, ""},
		{remote, []string{"--api", srv.URL, "--token", "given"}, "Bearer given"},
		{remote, []string{"--api", srv.URL + "/?token=fromurl"}, "Bearer fromurl"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, node.APIURLFile), []byte(tc.apiURL+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, node.TokenFile), []byte("local\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"status", "--data", dir}, tc.args...)
		if code, _, errs := run(args...); code != ExitOK {
			t.Fatalf("%v (api-url %s): exit %d %q", args, tc.apiURL, code, errs)
		}
		if got := <-seen; got != tc.want {
			t.Errorf("%v (api-url %s): sent Authorization %q, want %q", args, tc.apiURL, got, tc.want)
		}
	}
}
