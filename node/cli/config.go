package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

// runConfig is `hydra config get` and `hydra config set key=value…`: the cluster's replicated
// settings (retention, disk-cap, max-jobs, read-auth). Setting them is an admin action (the API token).
func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "get" && args[0] != "set" && args[0] != "-h" && args[0] != "--help") {
		return usagef("want 'hydra config get' or 'hydra config set retention=72h disk-cap=8GiB max-jobs=20000 read-auth=false'")
	}
	verb := args[0]
	name := "config " + verb
	switch verb {
	case "set":
		name = "config set KEY=VALUE…"
	case "-h", "--help":
		name = "config get|set KEY=VALUE…"
	}
	fs, af := newClientFlags(name, stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if verb == "-h" || verb == "--help" {
		fs.Usage()
		return nil
	}
	// Settings and flags in any order, as the other commands take their
	// arguments: hydra config set retention=72h --data DIR.
	var sets []string
	for rest := args[1:]; len(rest) > 0; rest = fs.Args() {
		for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			sets, rest = append(sets, rest[0]), rest[1:]
		}
		if len(rest) == 0 {
			break
		}
		if rest[0] == "-" || rest[0] == "--" {
			return usagef("%q: not a setting (want key=value)", rest[0])
		}
		if err := parseFlagSet(fs, rest); err != nil {
			return err
		}
	}
	switch {
	case verb == "get" && len(sets) > 0:
		return usagef("config get takes no arguments (got %q)", sets[0])
	case verb == "set" && len(sets) == 0:
		return usagef("config set wants key=value assignments: retention=72h disk-cap=8GiB max-jobs=20000")
	}
	// The shape is checked here (a usage error, 78, before asking); keys, values and bounds are
	// the node's to judge, and a setting it refuses is a refused request (1), as for every command.
	for _, a := range sets {
		if k, _, ok := strings.Cut(a, "="); !ok || k == "" {
			return usagef("%q: not a setting (want key=value, such as retention=72h)", a)
		}
	}
	c, ctx, cancel, err := af.connect(45 * time.Second)
	if err != nil {
		return err
	}
	defer cancel()
	var cfg webui.ClusterConfig
	if verb == "get" {
		err = c.Do(ctx, "GET", "/api/v1/config", nil, &cfg)
	} else {
		err = c.Do(ctx, "PUT", "/api/v1/config", webui.ConfigChange{Set: sets}, &cfg)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, cfg)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "retention\t%s\n", cfg.Retention)
	diskCap := "0 (no cap)"
	if cfg.DiskCap != 0 {
		diskCap = fmt.Sprintf("%s (%d bytes)", consensus.FormatSize(cfg.DiskCap), cfg.DiskCap)
	}
	fmt.Fprintf(tw, "disk-cap\t%s\n", diskCap)
	fmt.Fprintf(tw, "max-jobs\t%d\n", cfg.MaxJobs)
	fmt.Fprintf(tw, "read-auth\t%t\n", cfg.ReadAuth)
	return tw.Flush()
}
