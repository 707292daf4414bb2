//go:build linux

// Command benchfailover measures a Hydra cluster of real `hydra node`
// processes on loopback (no mDNS: --mdns=false, every node is given every
// other one with --join). scripts/bench-failover and scripts/bench-noflap
// build it and run it; see them for the usual invocations.
//
// -mode failover (default) prints:
//
//   - failover: a -nodes cluster (default 5) is started once; each of -runs
//     runs (default 10) waits for a stable leader (all nodes agree on leader,
//     term and cluster_id, the leader lists every node as a member with
//     exactly -voters voters, all online, unchanged for 2 s), SIGKILLs the
//     leader (and anything it spawned), then polls the survivors'
//     GET /api/v1/status every 20 ms until all of them name the same new
//     leader, which is one of them. The time is from just before the kill to
//     the end of the first poll round that agrees. The killed node is then
//     restarted with the same data directory (same peer ID) and the next run
//     waits until the cluster is stable again with it.
//   - bootstrap: -join-runs times (default 5), -join-nodes fresh nodes
//     (default 7, new identities and data) are started at the same instant;
//     the time until all of them name the same leader and cluster_id and the
//     leader lists all of them as members. Every cluster_id seen is counted:
//     more than one means a split brain, even a transient one.
//   - idle: on the failover cluster after the last run, -idle (default 60 s)
//     with no API polling: CPU% of one core (utime+stime from /proc/PID/stat,
//     of the node and every process under it, plus cutime/cstime of reaped
//     children) and resident memory (VmRSS from /proc/PID/status summed over
//     the same processes; last and max of 1 s samples) of the leader, of a
//     voting follower and of a non-voter.
//   - the binary's size.
//
// -mode noflap runs a -nodes cluster for -duration while -hogs busy loops
// (default 2 per core, normal priority) saturate every core, polls every
// node's status every 250 ms, and reports leader changes, term increases,
// polls where a node had no leader and the slowest status answer (goal: no
// leader change and no term increase).
//
// Processes: every node runs with Pdeathsig=SIGKILL and is killed on exit,
// on SIGINT and on SIGTERM; the wrappers also run this program in a session
// of its own and kill that whole process group when they exit.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

func stats(ds []time.Duration) (median, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		median = s[len(s)/2]
	} else {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return median, s[len(s)-1]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func failover(work string, report *[]string) *procluster.Cluster {
	c := newCluster(filepath.Join(work, "failover"), "f", *flagNodes)
	t0 := time.Now()
	sess.Check(c.StartAll())
	if _, _, err := procluster.WaitStable(c, *flagVoters, 2*time.Second, 90*time.Second); err != nil {
		c.Tails(30)
		fatalf("failover cluster: %v", err)
	}
	fmt.Printf("failover: %d-node cluster stable after %s\n", *flagNodes, secs(time.Since(t0)))
	var times []time.Duration
	failures := 0
	for run := 1; run <= *flagRuns; run++ {
		leader, term, err := procluster.WaitStable(c, *flagVoters, 2*time.Second, 90*time.Second)
		if err != nil {
			c.Tails(30)
			fatalf("run %d: %v", run, err)
		}
		victim := c.ByID(leader)
		var surv []*procluster.Proc
		for _, p := range c.Nodes {
			if p != victim {
				surv = append(surv, p)
			}
		}
		start := time.Now()
		victim.Kill()
		var got time.Duration
		var nl string
		var nt uint64
		var last []procluster.Answer
		tick := time.NewTicker(20 * time.Millisecond)
		for {
			as := procluster.Poll(surv)
			last = as
			if l, _, t, ok := procluster.Agreement(surv, as); ok && l != leader {
				got, nl, nt = time.Since(start), l, t
				break
			}
			if time.Since(start) > 30*time.Second {
				break
			}
			<-tick.C
		}
		tick.Stop()
		if nl == "" {
			failures++
			fmt.Printf("  run %2d: killed %s (term %d): NO new leader within 30s\n%s", run, victim.Name, term, procluster.Describe(c, surv, last))
			times = append(times, 30*time.Second)
		} else {
			fmt.Printf("  run %2d: killed %s (term %d) -> %s (term %d) in %s\n", run, victim.Name, term, c.Name(nl), nt, secs(got))
			times = append(times, got)
		}
		if err := victim.Start(); err != nil {
			fatalf("restart %s: %v", victim.Name, err)
		}
	}
	med, worst := stats(times)
	line := fmt.Sprintf("failover (SIGKILL leader -> %d survivors agree, %d nodes, 20 ms polls, %d runs): median %s, worst %s", *flagNodes-1, *flagNodes, len(times), secs(med), secs(worst))
	if failures > 0 {
		line += fmt.Sprintf(", %d runs without a new leader in 30 s", failures)
	}
	*report = append(*report, line)
	return c
}

func bootstrap(work string, report *[]string) {
	var times []time.Duration
	failures, splits := 0, 0
	for run := 1; run <= *flagJoinRuns; run++ {
		c := newCluster(filepath.Join(work, fmt.Sprintf("boot%d", run)), fmt.Sprintf("b%d-", run), *flagJoinNodes)
		cids := map[string]bool{}
		start := time.Now()
		sess.Check(c.StartAll())
		var got time.Duration
		var last []procluster.Answer
		for time.Since(start) < 60*time.Second {
			as := procluster.Poll(c.Nodes)
			last = as
			for _, a := range as {
				if a.Err == nil && a.St.ClusterID != "" {
					cids[a.St.ClusterID] = true
				}
			}
			if l, _, _, ok := procluster.Agreement(c.Nodes, as); ok {
				for i, p := range c.Nodes {
					if p.ID == l && as[i].St.Members() == len(c.Nodes) {
						got = time.Since(start)
					}
				}
				if got > 0 {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(cids) > 1 {
			splits++
		}
		if got == 0 {
			failures++
			fmt.Printf("  run %d: %d nodes NOT in one cluster after 60s (%d cluster ids seen)\n%s", run, *flagJoinNodes, len(cids), procluster.Describe(c, c.Nodes, last))
			c.Tails(15)
		} else {
			fmt.Printf("  run %d: %d nodes in one cluster after %s (%d cluster id seen)\n", run, *flagJoinNodes, secs(got), len(cids))
			times = append(times, got)
		}
		c.Stop()
		if !*flagKeep {
			os.RemoveAll(c.Dir)
		}
	}
	med, worst := stats(times)
	line := fmt.Sprintf("bootstrap (%d nodes started at once -> one cluster, one leader, all members, %d runs): median %s, worst %s", *flagJoinNodes, *flagJoinRuns, secs(med), secs(worst))
	if failures > 0 || splits > 0 {
		line += fmt.Sprintf("; %d runs failed, %d saw more than one cluster_id", failures, splits)
	}
	*report = append(*report, line)
}

func idle(c *procluster.Cluster, report *[]string) {
	leader, _, err := procluster.WaitStable(c, *flagVoters, 2*time.Second, 90*time.Second)
	if err != nil {
		c.Tails(30)
		fatalf("idle: %v", err)
	}
	as := procluster.Poll(c.Nodes)
	var ls *procluster.Status
	for i, p := range c.Nodes {
		if p.ID == leader {
			ls = as[i].St
		}
	}
	picks := []struct {
		label string
		p     *procluster.Proc
	}{{"leader", c.ByID(leader)}}
	var voter, nonvoter *procluster.Proc
	for _, p := range c.Nodes {
		switch ls.RoleOf(p.ID) {
		case "voter":
			if voter == nil {
				voter = p
			}
		case "nonvoter":
			if nonvoter == nil {
				nonvoter = p
			}
		}
	}
	if voter != nil {
		picks = append(picks, struct {
			label string
			p     *procluster.Proc
		}{"voting follower", voter})
	}
	if nonvoter != nil {
		picks = append(picks, struct {
			label string
			p     *procluster.Proc
		}{"non-voter", nonvoter})
	}
	type acc struct {
		t0, t1    int64
		last, max int64
		own       int64
		nproc     int
	}
	accs := make([]acc, len(picks))
	for i, pk := range picks {
		accs[i].t0 = procluster.CPUTicks(pk.p.PID())
	}
	fmt.Printf("idle: measuring %v with no API traffic...\n", *flagIdle)
	start := time.Now()
	for time.Since(start) < *flagIdle {
		time.Sleep(time.Second)
		for i, pk := range picks {
			r, own, n := procluster.RSSKB(pk.p.PID())
			accs[i].last, accs[i].own, accs[i].nproc = r, own, n
			if r > accs[i].max {
				accs[i].max = r
			}
		}
	}
	el := time.Since(start).Seconds()
	for i, pk := range picks {
		accs[i].t1 = procluster.CPUTicks(pk.p.PID())
		a := accs[i]
		cpu := float64(a.t1-a.t0) / procluster.ClockTick / el * 100
		*report = append(*report, fmt.Sprintf("idle %-15s (%s, %d process(es)): CPU %.2f%% of a core over %.0fs, RSS %.1f MB (node %.1f MB + children %.1f MB; max %.1f MB)",
			pk.label, pk.p.Name, a.nproc, cpu, el, float64(a.last)/1024, float64(a.own)/1024, float64(a.last-a.own)/1024, float64(a.max)/1024))
	}
	l2, _, err := procluster.WaitStable(c, *flagVoters, 0, 10*time.Second)
	if err != nil || l2 != leader {
		*report = append(*report, fmt.Sprintf("  (leadership changed during the idle window: %s -> %s)", c.Name(leader), c.Name(l2)))
	}
}

func noflap(work string) {
	c := newCluster(filepath.Join(work, "noflap"), "q", *flagNodes)
	sess.Check(c.StartAll())
	leader, term, err := procluster.WaitStable(c, *flagVoters, 2*time.Second, 90*time.Second)
	if err != nil {
		c.Tails(30)
		fatalf("noflap: %v", err)
	}
	fmt.Printf("noflap: %d nodes stable, leader %s, term %d; starting %d busy loops on %d cores for %v\n",
		*flagNodes, c.Name(leader), term, *flagHogs, runtime.NumCPU(), *flagDuration)
	var hogs []*exec.Cmd
	for i := 0; i < *flagHogs; i++ {
		h := exec.Command("sh", "-c", "while :; do :; done")
		if err := procluster.StartTracked(h); err != nil {
			fatalf("hog: %v", err)
		}
		hogs = append(hogs, h)
		go func() { h.Wait(); procluster.Untrack(h) }()
	}
	var (
		changes, leaderless, errs, polls int
		maxLat                           time.Duration
		maxTerm                          = term
		cur                              = leader
	)
	start := time.Now()
	for time.Since(start) < *flagDuration {
		as := procluster.Poll(c.Nodes)
		polls++
		for i, a := range as {
			if a.Lat > maxLat {
				maxLat = a.Lat
			}
			if a.Err != nil {
				errs++
				continue
			}
			if a.St.Term > maxTerm {
				fmt.Printf("  %6.1fs: %s reports term %d (leader %s)\n", time.Since(start).Seconds(), c.Nodes[i].Name, a.St.Term, c.Name(a.St.Leader))
				maxTerm = a.St.Term
			}
			if a.St.Leader == "" {
				leaderless++
			} else if a.St.Leader != cur {
				fmt.Printf("  %6.1fs: %s sees leader %s (was %s)\n", time.Since(start).Seconds(), c.Nodes[i].Name, c.Name(a.St.Leader), c.Name(cur))
				changes++
				cur = a.St.Leader
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, h := range hogs {
		h.Process.Kill()
	}
	fmt.Printf("noflap: %v, %d nodes, %d busy loops on %d cores: %d leader changes, %d term increases (term %d -> %d), %d node-polls without a leader, %d failed polls of %d, slowest status answer %s\n",
		time.Since(start).Round(time.Second), *flagNodes, *flagHogs, runtime.NumCPU(), changes, maxTerm-term, term, maxTerm, leaderless, errs, polls*len(c.Nodes), secs(maxLat))
	c.Stop()
	if changes > 0 || maxTerm != term {
		exitCode = 1
	}
}

var exitCode = 0

func main() {
	flag.Parse()
	if *flagHydra == "" {
		fmt.Fprintln(os.Stderr, "benchfailover: -hydra is required")
		os.Exit(2)
	}
	if abs, err := filepath.Abs(*flagHydra); err == nil {
		*flagHydra = abs
	}
	fi, err := os.Stat(*flagHydra)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchfailover: %v\n", err)
		os.Exit(2)
	}
	sess.Keep = *flagKeep
	if err := sess.SetWorkDir(*flagWork, "hydra-bench-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sess.ExitOnSignal()
	workDir := sess.WorkDir()

	switch *flagMode {
	case "failover":
		var report []string
		c := failover(workDir, &report)
		if *flagIdle > 0 {
			idle(c, &report)
		}
		c.Stop()
		if *flagJoinRuns > 0 {
			fmt.Printf("bootstrap: %d x %d nodes started at once\n", *flagJoinRuns, *flagJoinNodes)
			bootstrap(workDir, &report)
		}
		line := fmt.Sprintf("binary: %.1f MB (%d bytes, %s/%s)", float64(fi.Size())/(1<<20), fi.Size(), runtime.GOOS, runtime.GOARCH)
		if *flagStripped != "" {
			if si, err := os.Stat(*flagStripped); err == nil {
				line += fmt.Sprintf("; built with -ldflags='-s -w': %.1f MB", float64(si.Size())/(1<<20))
			}
		}
		report = append(report, line)
		fmt.Println("\n==== report")
		for _, l := range report {
			fmt.Println(l)
		}
	case "noflap":
		noflap(workDir)
	default:
		fmt.Fprintf(os.Stderr, "benchfailover: -mode %q: want failover or noflap\n", *flagMode)
		os.Exit(2)
	}
	sess.Cleanup()
	os.Exit(exitCode)
}
