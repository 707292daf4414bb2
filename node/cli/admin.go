package cli

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

// adminCall runs one admin request against the node's API.
func adminCall(af *apiFlags, method, path string, body, out any) error {
	c, ctx, cancel, err := af.connect(40 * time.Second)
	if err != nil {
		return err
	}
	defer cancel()
	return c.Do(ctx, method, path, body, out)
}

// oneArg parses flags and exactly one positional argument: what it is, and
// arg, how usage messages show it (FINGERPRINT).
func oneArg(name, what, arg string, args []string, stdout io.Writer, reg func(fs *flag.FlagSet)) (string, *apiFlags, error) {
	fs, af := newClientFlags(name+" "+arg, stdout)
	if reg != nil {
		reg(fs)
	}
	// Allow the argument before or after the flags.
	var pos string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		pos, args = args[0], args[1:]
	}
	if err := parseFlagSet(fs, args); err != nil {
		return "", nil, err
	}
	if pos == "" && fs.NArg() > 0 {
		pos = fs.Arg(0)
		if fs.NArg() > 1 {
			return "", nil, usagef("unexpected argument %q", fs.Arg(1))
		}
	} else if fs.NArg() > 0 {
		return "", nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	if pos == "" {
		return "", nil, usagef("which %s? (hydra %s %s)", what, name, arg)
	}
	return pos, af, nil
}

func runApprove(args []string, stdout, stderr io.Writer) error {
	var role string
	fp, af, err := oneArg("approve", "fingerprint", "FINGERPRINT", args, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&role, "role", "member", "role of the node: member or worker (a worker never votes)")
	})
	if err != nil {
		return err
	}
	if role != consensus.RoleMember && role != consensus.RoleWorker {
		return usagef("--role %q: want member or worker", role)
	}
	var res webui.PendingResult
	if err := adminCall(af, http.MethodPost, "/api/v1/approve", map[string]string{"fingerprint": fp, "role": role}, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "approved %s (%s) as %s\n", res.Fingerprint, res.ID, res.Role)
	return nil
}

func runDeny(args []string, stdout, stderr io.Writer) error {
	fp, af, err := oneArg("deny", "fingerprint", "FINGERPRINT", args, stdout, nil)
	if err != nil {
		return err
	}
	var res webui.PendingResult
	if err := adminCall(af, http.MethodPost, "/api/v1/deny", map[string]string{"fingerprint": fp}, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "denied %s (%s): its key is refused from now on\n", res.Fingerprint, res.ID)
	return nil
}

func runRemove(args []string, stdout, stderr io.Writer) error {
	nd, af, err := oneArg("remove", "node", "NODE", args, stdout, nil)
	if err != nil {
		return err
	}
	var res webui.PendingResult
	if err := adminCall(af, http.MethodPost, "/api/v1/remove", map[string]string{"node": nd}, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s (%s): its key is refused from now on\n", res.Fingerprint, res.ID)
	return nil
}

func runToken(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("hydra token create|list|revoke")
	}
	switch args[0] {
	case "create":
		return runTokenCreate(args[1:], stdout)
	case "list":
		return runTokenList(args[1:], stdout)
	case "revoke":
		id, af, err := oneArg("token revoke", "token ID", "ID", args[1:], stdout, nil)
		if err != nil {
			return err
		}
		if err := adminCall(af, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", id)
		return nil
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "Usage: hydra token create --role member|worker|admin|viewer [--ttl 24h] [--uses N] [--json]\n       hydra token list [--json]\n       hydra token revoke ID")
		return nil
	}
	return usagef("hydra token %q: want create, list or revoke", args[0])
}

func runTokenCreate(args []string, stdout io.Writer) error {
	fs, af := newClientFlags("token create", stdout)
	role := fs.String("role", "member", "member or worker (join tokens), admin or viewer (API credentials)")
	ttl := fs.Duration("ttl", 0, "how long a join token stays valid (default 24h; 0: it never expires, so revoke it when done)")
	uses := fs.Int("uses", 0, "how many machines a join token admits (0: any number)")
	asJSON := fs.Bool("json", false, `print {"token": …} as JSON`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch *role {
	case consensus.RoleMember, consensus.RoleWorker, webui.RoleAdmin, webui.RoleViewerCred:
	default:
		return usagef("--role %q: want member, worker, admin or viewer", *role)
	}
	if *ttl < 0 || *uses < 0 {
		return usagef("--ttl and --uses: want a duration and a count ≥ 0")
	}
	// --ttl 0 is sent as "0s", which the API takes as "never expires"; only a --ttl not given
	// leaves the node's default (24 h). Sent only when given, a 0 was that default.
	ttlGiven := false
	fs.Visit(func(f *flag.Flag) { ttlGiven = ttlGiven || f.Name == "ttl" })
	if (*role == webui.RoleAdmin || *role == webui.RoleViewerCred) && (ttlGiven || *uses != 0) {
		return usagef("--role %s makes an API credential, which has no --ttl or --uses (revoke it with hydra token revoke ID)", *role)
	}
	req := webui.TokenRequest{Role: *role, Uses: *uses}
	if ttlGiven {
		req.TTL = ttl.String()
	}
	var res webui.TokenCreated
	if err := adminCall(af, http.MethodPost, "/api/v1/tokens", req, &res); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	fmt.Fprintln(stdout, res.Token)
	return nil
}

func runTokenList(args []string, stdout io.Writer) error {
	fs, af := newClientFlags("token list", stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var res struct {
		Tokens []webui.TokenInfo `json:"tokens"`
	}
	if err := adminCall(af, http.MethodGet, "/api/v1/tokens", nil, &res); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tROLE\tNODE\tCREATED\tEXPIRES\tUSED")
	for _, t := range res.Tokens {
		exp, used := "-", "-"
		if !t.Expires.IsZero() {
			exp = t.Expires.Local().Format(time.DateTime)
		}
		if t.Kind == "join" {
			used = fmt.Sprint(t.Used)
			if t.Uses > 0 {
				used += fmt.Sprintf("/%d", t.Uses)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Role, short(t.Node), t.Created.Local().Format(time.DateTime), exp, used)
	}
	return tw.Flush()
}

func runAdmit(args []string, stdout, stderr io.Writer) error {
	mode, af, err := oneArg("admit", "mode (approval or lan)", "approval|lan", args, stdout, nil)
	if err != nil {
		return err
	}
	if mode != "approval" && mode != "lan" {
		return usagef("mode %q: want approval or lan", mode)
	}
	if err := adminCall(af, http.MethodPost, "/api/v1/admit", map[string]string{"mode": mode}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "admission mode: %s\n", mode)
	return nil
}
