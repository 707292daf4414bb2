package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hydra-compute/hydra/node"
	"github.com/hydra-compute/hydra/webui"
)

// apiFlags are the flags every client command shares: where the node is and
// the token for writes.
type apiFlags struct {
	api, data, token string
}

// newClientFlags is the start of every client command: its flag set with
// the API flags registered.
func newClientFlags(name string, stdout io.Writer) (*flag.FlagSet, *apiFlags) {
	fs := newFlagSet(name, stdout)
	af := &apiFlags{}
	af.register(fs)
	return fs, af
}

// connect returns the client (see client) and a context for the command's
// requests, ended by timeout; call cancel when done.
func (a *apiFlags) connect(timeout time.Duration) (*webui.Client, context.Context, context.CancelFunc, error) {
	c, err := a.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return c, ctx, cancel, nil
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.api, "api", "", "API base URL of a node; the web address a node prints, ?token= included, will do (default: the local node found through --data)")
	fs.StringVar(&a.data, "data", node.DefaultDataDir(), "data directory of the local node")
	fs.StringVar(&a.token, "token", "", "API token (default: --api's ?token=, $HYDRA_TOKEN, then the local node's data directory)")
}

// client resolves the API URL and token: --api/--token (or --api's
// ?token=), $HYDRA_TOKEN, then the files the local node wrote into its data
// directory.
func (a *apiFlags) client() (*webui.Client, error) {
	base, token := a.api, strings.TrimSpace(a.token)
	if base != "" {
		b, t, err := apiBase(base)
		if err != nil {
			return nil, usageError{err}
		}
		base = b
		if token == "" {
			token = t
		}
	}
	if token == "" {
		token = strings.TrimSpace(os.Getenv("HYDRA_TOKEN")) // $(cat file) keeps no newline, an editor may
	}
	refused := ""
	if base == "" || token == "" {
		lu, lt, err := node.ReadLocal(a.data)
		if base == "" {
			if err != nil {
				return nil, usageError{err}
			}
			base = lu
			refused = fmt.Sprintf("the address in %s, from the local node's last start: is it running? Start it with 'hydra node', or pass --api",
				filepath.Join(a.data, node.APIURLFile))
		}
		if token == "" && (a.api == "" || sameNode(base, lu)) {
			// The local node's own credential goes to the local node only: sent to whatever
			// --api names, it would hand this cluster's admin credential to another cluster's
			// node, or to any host a mistyped address reaches. --token and $HYDRA_TOKEN go anywhere.
			token = lt
		}
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		base = "http://" + base
	}
	c := webui.NewClient(base, token)
	c.HTTP.Transport = &nodeClock{base: c.HTTP.Transport, refused: refused}
	return c, nil
}

// sameNode reports whether the API base URLs a (--api) and b (DATA/api-url) name the local
// node's machine: the same port on the same host, or loopback both (localhost and 127.0.0.1
// alike, any port: the nodes of one machine, as the several-nodes-on-one-machine recipe runs
// them, each accepting every member's credential).
func sameNode(a, b string) bool {
	ua, erra := url.Parse(a)
	ub, errb := url.Parse(b)
	if erra != nil || errb != nil {
		return false
	}
	if loopbackHost(ua.Hostname()) && loopbackHost(ub.Hostname()) {
		return true
	}
	return ua.Port() == ub.Port() && strings.EqualFold(ua.Hostname(), ub.Hostname())
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// apiBase splits --api into the node's base URL and the token its query
// carries, so that the web address a node prints at start
// (http://host:7070/?token=…) does as --api: a query or fragment is no part
// of the base (appended to a query, the API's paths would reach the UI's
// page instead).
func apiBase(s string) (base, token string, err error) {
	full := s
	if scheme, _, ok := strings.Cut(full, "://"); ok && isScheme(scheme) && scheme != "http" && scheme != "https" {
		return "", "", fmt.Errorf("--api %s: want an http:// or https:// address, like http://host:7070", redactToken(s))
	}
	if !strings.HasPrefix(full, "http://") && !strings.HasPrefix(full, "https://") {
		full = "http://" + full
	}
	u, err := url.Parse(full)
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("--api %s: want a node's address, like http://host:7070", redactToken(s))
	}
	token = u.Query().Get("token")
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	return strings.TrimRight(u.String(), "/"), token, nil
}

// isScheme reports whether s is a URL scheme (RFC 3986: a letter, then letters, digits, + - .).
func isScheme(s string) bool {
	for i, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && ('0' <= r && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return s != ""
}

// redactToken is --api as an error quotes it: a credential in it (?token=…) is not printed.
func redactToken(s string) string {
	if i := strings.Index(s, "token="); i >= 0 {
		end := strings.IndexAny(s[i:], "&#")
		if end < 0 {
			end = len(s) - i
		}
		s = s[:i] + "token=…" + s[i+end:]
	}
	return strconv.Quote(s)
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs, af := newClientFlags("status", stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := af.connect(15 * time.Second)
	if err != nil {
		return err
	}
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	now := nodeNow(c)
	leader := "(none)"
	for _, n := range st.Nodes {
		if n.ID == st.Leader {
			leader = clean(n.Name) + " " + short(n.ID)
		}
	}
	fmt.Fprintf(stdout, "cluster %s  term %d  leader %s  (seen from %s)\n\n", clean(st.Cluster), st.Term, leader, clean(st.Self.Name))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tROLE\tSTATE\tAUDITS\tPLATFORM\tCORES\tLOAD\tLAST SEEN")
	for _, n := range st.Nodes {
		seen := "-"
		if !n.LastSeen.IsZero() {
			seen = max(0, now.Sub(n.LastSeen)).Round(time.Second).String() + " ago"
		}
		name := clean(n.Name)
		if n.ID == st.Self.ID {
			name += " *"
		}
		state := clean(n.State)
		if n.Reason != "" {
			state += ": " + clean(n.Reason)
		}
		if n.Power == "battery" && n.Reason != "on battery" {
			state += " (on battery)"
		}
		audits := fmt.Sprintf("%s %d✓ %d✗", n.Audit.State, n.Audit.Passed, n.Audit.Failed)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s/%s\t%d\t%.2f\t%s\n", name, short(n.ID), n.Role, state, audits, clean(n.OS), clean(n.Arch), n.Cores, n.Load, seen)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Why a member holds no vote (voters are few on purpose: 3, or 5).
	first := true
	for _, n := range st.Nodes {
		if n.Role != webui.RoleNonvoter || n.NonvoterReason == "" {
			continue
		}
		if first {
			fmt.Fprintln(stdout, "\nnon-voters:")
			first = false
		}
		fmt.Fprintf(stdout, "  %s %s: %s\n", clean(n.Name), short(n.ID), clean(n.NonvoterReason))
	}
	printClocks(stdout, st.Nodes)
	if st.Admission == "waiting" {
		fmt.Fprintf(stdout, "\nthis node waits for approval: fingerprint %s (on a member: hydra approve %s)\n", st.Fingerprint, st.Fingerprint)
	}
	if len(st.Pending) > 0 {
		fmt.Fprintf(stdout, "\nwaiting for approval (hydra approve FINGERPRINT, hydra deny FINGERPRINT):\n")
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FINGERPRINT\tNAME\tID\tADDRESS")
		for _, p := range st.Pending {
			addr := ""
			if len(p.Addrs) > 0 {
				addr = clean(p.Addrs[0])
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", clean(p.Fingerprint), clean(p.Name), short(p.ID), addr)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// printClocks names the nodes whose clocks are off from the cluster's. They still stamp the
// cluster's time (docs/design.md §2, Time), but a clock hours off is worth fixing.
func printClocks(w io.Writer, nodes []webui.NodeStatus) {
	first := true
	for _, n := range nodes {
		if n.ClockOffset == 0 {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nclocks off from the cluster's (fix them: NTP; the times these nodes stamp follow the cluster's):")
			first = false
		}
		off, way := time.Duration(n.ClockOffset*float64(time.Second)), "ahead"
		if off < 0 {
			off, way = -off, "behind"
		}
		fmt.Fprintf(w, "  %s %s: %s %s\n", clean(n.Name), short(n.ID), off.Round(time.Second), way)
	}
}

func short(id string) string {
	if len(id) > 12 {
		return "…" + id[len(id)-8:]
	}
	return id
}

func runLeave(args []string, stdout, stderr io.Writer) error {
	fs, af := newClientFlags("leave", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := af.connect(45 * time.Second)
	if err != nil {
		return err
	}
	defer cancel()
	if err := c.Do(ctx, "POST", "/api/v1/leave", struct{}{}, nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "node removed from the cluster and stopped")
	return nil
}

func runRecover(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("recover", stdout)
	data := fs.String("data", node.DefaultDataDir(), "data directory of the stopped node")
	voters := fs.String("voters", "", "comma-separated peer IDs of the surviving voters (default: this node alone)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var ids []string
	for _, v := range strings.Split(*voters, ",") {
		if v = strings.TrimSpace(v); v != "" {
			ids = append(ids, v)
		}
	}
	self, err := node.Recover(*data, ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recovered %s: raft configuration rewritten (%s); start the node again\n", self, strings.Join(nonEmpty(ids, self), ", "))
	return nil
}

func nonEmpty(ids []string, self string) []string {
	if len(ids) == 0 {
		return []string{self}
	}
	return ids
}
