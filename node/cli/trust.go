package cli

import (
	"context"
	"fmt"
	"io"
)

// runTrust is `hydra trust reset NODE`: an admin clears a node's failed
// audits and its quarantine; the node is new again (audited on every chunk)
// and gets work and may vote again.
func runTrust(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trust reset NODE", stdout)
	var af apiFlags
	af.register(fs)
	pos, err := parseFlagsArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "reset" {
		return usagef("usage: hydra trust reset NODE (a node name or peer ID, see 'hydra status')")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	id, err := c.TrustReset(ctx, pos[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trust reset: node %s is new again (audited on every chunk) and may take work\n", id)
	return nil
}
