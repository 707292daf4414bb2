package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/atomicfile"
	"github.com/hydra-compute/hydra/webui"
)

// The job commands: hydra jobs, job, result, cancel, rm (submit is in
// submit.go). They talk to a node's HTTP API through apiFlags, print tables
// for people and --json for scripts.

// requestTimeout bounds one API call of a client command.
const requestTimeout = 30 * time.Second

// writeRequestTimeout bounds a write through raft (submit, cancel, rm): longer than the node's
// own 30 s deadline for it, so that the node's answer comes before the client gives up: a 202
// (the job committed: submitting it again would add a second one) or a 503 (try again).
const writeRequestTimeout = 45 * time.Second

// uploadTimeout bounds a module upload (up to 32 MiB); the HTTP client's own 60 s bound it too.
const uploadTimeout = time.Minute

// parseFlagsArgs parses flags that may come before or after positional
// arguments (hydra job ID --json) and returns the positional ones.
func parseFlagsArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlagSet(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// jobClient is the start of every command on one job (job, result, cancel, rm): it parses the
// flags and the job ID and connects to the API (see apiFlags.connect).
func jobClient(fs *flag.FlagSet, af *apiFlags, args []string, timeout time.Duration) (string, *webui.Client, context.Context, context.CancelFunc, error) {
	id, err := jobIDArg(fs, args)
	if err != nil {
		return "", nil, nil, nil, err
	}
	c, ctx, cancel, err := af.connect(timeout)
	if err != nil {
		return "", nil, nil, nil, err
	}
	return id, c, ctx, cancel, nil
}

// jobIDArg parses flags and exactly one job ID.
func jobIDArg(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseFlagsArgs(fs, args)
	if err != nil {
		return "", err
	}
	switch len(pos) {
	case 0:
		return "", usagef("give a job ID (see 'hydra jobs')")
	case 1:
		return pos[0], nil
	}
	return "", usagef("give one job ID, not %d", len(pos))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runJobs(args []string, stdout, stderr io.Writer) error {
	fs, af := newClientFlags("jobs", stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	limit := fs.Int("limit", 0, "list at most this many jobs, the newest (0: all)")
	state := fs.String("state", "", "list only jobs in these states, comma-separated: queued, running, done, cancelled, failed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	q := webui.JobsQuery{Limit: *limit}
	if *limit < 0 || *limit > webui.MaxJobsPage {
		return usagef("--limit %d: want 0 (all) to %d", *limit, webui.MaxJobsPage)
	}
	if *state != "" {
		for st := range strings.SplitSeq(*state, ",") {
			js := compute.JobState(strings.TrimSpace(st))
			switch js {
			case compute.StateQueued, compute.StateRunning, compute.StateDone, compute.StateCancelled, compute.StateFailed:
				q.States = append(q.States, js)
			default:
				return usagef("--state %q: want queued, running, done, cancelled or failed", st)
			}
		}
	}
	c, ctx, cancel, err := af.connect(requestTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	jobs, err := c.JobsWhere(ctx, q)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, jobs)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(stdout, "no jobs (submit one with 'hydra submit pi', 'hydra submit mandelbrot' or 'hydra submit wasm')")
		return nil
	}
	now := nodeNow(c)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tKIND\tSTATE\tPROGRESS\tAGE")
	for _, j := range jobs {
		name := clean(j.Spec.Name)
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%5.1f%%\t%s\n", j.ID, name, j.Spec.Kind, j.State, 100*j.Progress, age(now, j.SubmittedAt))
	}
	return tw.Flush()
}

func runJob(args []string, stdout, stderr io.Writer) error {
	fs, af := newClientFlags("job ID", stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	id, c, ctx, cancel, err := jobClient(fs, af, args, requestTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	v, err := c.Job(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	printJob(stdout, v, nodeNow(c))
	fmt.Fprintln(stdout)
	return printContributions(ctx, stdout, c, v)
}

// printJob describes a job for people.
func printJob(w io.Writer, v webui.JobView, now time.Time) {
	title := "job " + v.ID
	if v.Spec.Name != "" {
		title += " (" + clean(v.Spec.Name) + ")"
	}
	fmt.Fprintf(w, "%s  %s  %s  %.1f%%  (%s of %s %s)\n", title, v.Spec.Kind, v.State, 100*v.Progress,
		group(v.DoneUnits), group(v.TotalUnits), v.Unit)
	fmt.Fprintf(w, "  %s  priority %d\n", describeParams(v.Spec), v.Spec.Priority)
	times := "  submitted " + v.SubmittedAt.Local().Format("2006-01-02 15:04:05") + " (" + age(now, v.SubmittedAt) + " ago)"
	// Stamps of different nodes' clocks (the cluster's clock, which may move when leadership
	// does: docs/design.md §2, Time) can disagree by a little: never a negative interval.
	if !v.StartedAt.IsZero() {
		times += ", started +" + roundDur(max(0, v.StartedAt.Sub(v.SubmittedAt)))
	}
	if !v.FinishedAt.IsZero() {
		times += ", finished +" + roundDur(max(0, v.FinishedAt.Sub(v.SubmittedAt)))
	}
	fmt.Fprintln(w, times)
	if v.Reason != "" {
		fmt.Fprintf(w, "  failed: %s\n", oneLine(v.Reason))
	}
	if !v.State.Finished() && v.DoneUnits > v.ClearedUnits {
		// Done is not yet counted: the units wait for their audit (docs/audits.md), which is
		// why a job can stand at 100 % and still run.
		line := fmt.Sprintf("  audits: %s of the done %s wait for their check", group(v.DoneUnits-v.ClearedUnits), v.Unit)
		if v.Disputes > 0 {
			line += fmt.Sprintf("; %d chunk(s) in dispute wait for a third node (neither the chunk's node nor its auditor) to recompute them", v.Disputes)
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "  compute %.1f s on %d node(s)\n", v.ComputeSeconds, len(v.Nodes))
}

func describeParams(s compute.JobSpec) string {
	switch {
	case s.Pi != nil:
		return fmt.Sprintf("samples %s  seed %d", group(s.Pi.Samples), s.Pi.Seed)
	case s.Mandel != nil:
		m := s.Mandel
		return fmt.Sprintf("%d×%d  center %s,%s  span %s  max_iter %d", m.Width, m.Height,
			fmtFloat(m.CenterX), fmtFloat(m.CenterY), fmtFloat(m.Span), m.MaxIter)
	case s.Wasm != nil:
		return fmt.Sprintf("module %s…  items %s  reduce %s", s.Wasm.Module[:min(12, len(s.Wasm.Module))], group(s.Wasm.Items), s.Wasm.Reduce)
	}
	return "(unknown parameters)"
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// printContributions prints which nodes did how much. Node names come with
// the job view; if a node is missing there, GET /api/v1/status may know it.
func printContributions(ctx context.Context, w io.Writer, c *webui.Client, v webui.JobView) error {
	if len(v.Nodes) == 0 {
		fmt.Fprintln(w, "no results accepted yet")
		return nil
	}
	var names map[string]string
	for _, n := range v.Nodes {
		if n.Name == "" && names == nil {
			names = map[string]string{}
			if st, err := c.Status(ctx); err == nil {
				for _, sn := range st.Nodes {
					names[sn.ID] = sn.Name
				}
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\t%s\tSHARE\tCHUNKS\tCOMPUTE\n", strings.ToUpper(v.Unit))
	for _, n := range v.Nodes {
		name := n.Name
		if name == "" {
			name = names[n.Node]
		}
		if name == "" {
			name = short(n.Node)
		}
		name = clean(name)
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%d\t%.1fs\n", name, group(n.Units), 100*n.Share, n.Chunks, n.ComputeSeconds)
	}
	return tw.Flush()
}

func runResult(args []string, stdout, stderr io.Writer) error {
	fs, af := newClientFlags("result ID", stdout)
	out := fs.String("o", "", "Mandelbrot: write the image to this file (PNG, or raw counts with --raw); wasm with reduce concat: the output bytes; - is stdout")
	raw := fs.Bool("raw", false, "Mandelbrot: write W×H uint32 little-endian iteration counts instead of a PNG")
	asJSON := fs.Bool("json", false, "print the result (π, wasm) or the image summary (Mandelbrot) as JSON")
	id, err := jobIDArg(fs, args)
	if err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	// Ctrl-C ends the command as a failed download: no partial file, no temporary one left.
	sigCtx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	ctx, cancel := context.WithTimeout(sigCtx, requestTimeout)
	defer cancel()
	res, err := c.Result(ctx, id)
	if err != nil {
		return interrupted(sigCtx, err)
	}
	switch {
	case res.PiResult != nil:
		if *raw || *out != "" {
			return usagef("-o and --raw are for Mandelbrot images; job %s is a π job", id)
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		printPi(stdout, res)
		return nil
	case res.MandelSummary != nil:
		toFile := *out != "" && *out != "-"
		if *asJSON && !toFile {
			return printJSON(stdout, res) // the summary; the image needs -o
		}
		if err := writeImage(sigCtx, c, id, *out, *raw, stdout); err != nil {
			return interrupted(sigCtx, err)
		}
		if !res.Complete {
			fmt.Fprintf(stderr, "note: job %s is %s: %d of %d rows are done; the others are blank\n", id, res.State, res.DoneRows, res.TotalRows)
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		if toFile {
			fmt.Fprintf(stdout, "wrote %s (%d×%d, %s)\n", *out, res.Width, res.Height, imageKind(*raw))
		}
		return nil
	case res.WasmResult != nil:
		if *raw {
			return usagef("--raw is for Mandelbrot images; job %s is a wasm job", id)
		}
		if *out != "" && res.Reduce != compute.ReduceConcat {
			return usagef("-o is for the output of a wasm job with reduce concat; job %s reduces with %s", id, res.Reduce)
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		return interrupted(sigCtx, printWasm(sigCtx, c, webui.JobView{ID: id}, res, stdout, out))
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	return fmt.Errorf("job %s: a %s result this hydra cannot show (try --json)", id, res.Kind)
}

func imageKind(raw bool) string {
	if raw {
		return "raw uint32 little-endian counts"
	}
	return "PNG"
}

// printPi prints π ± its standard error and how it was reached.
func printPi(w io.Writer, r webui.ResultView) {
	if r.Samples == 0 {
		fmt.Fprintf(w, "no samples accepted yet (job %s is %s)\n", r.ID, r.State)
		return
	}
	digits := 4
	if r.StdError > 0 {
		digits = max(4, int(math.Ceil(-math.Log10(r.StdError)))+2)
	}
	digits = min(digits, 15)
	fmt.Fprintf(w, "π ≈ %.*f ± %.*f\n", digits, r.Estimate, digits, r.StdError)
	line := fmt.Sprintf("  %s hits of %s samples", group(r.Hits), group(r.Samples))
	if r.StdError > 0 {
		line += fmt.Sprintf("; %.1fσ from π", math.Abs(r.Estimate-math.Pi)/r.StdError)
	}
	if !r.Complete {
		line += fmt.Sprintf(" (partial: job is %s, %s of %s samples accepted)", r.State, group(r.Samples), group(r.TotalSamples))
	}
	fmt.Fprintln(w, line)
}

// writeImage downloads a Mandelbrot job's PNG (or raw counts) to path, or to
// stdout when path is "" or "-" — never to a terminal. ctx ends it (Ctrl-C).
func writeImage(ctx context.Context, c *webui.Client, id, path string, raw bool, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if path == "" || path == "-" {
		if isTerminal(stdout) {
			return usagef("refusing to write a %s to a terminal: use -o FILE (or redirect stdout)", imageKind(raw))
		}
		_, err := c.ResultPNG(ctx, id, raw, stdout)
		return err
	}
	return writeOutput(path, func(w io.Writer) error {
		_, err := c.ResultPNG(ctx, id, raw, w)
		return err
	})
}

// writeOutput writes what download writes into the file path (-o): a failed or interrupted
// download leaves no partial file under path (an earlier file stays as it was), and a crash or
// a power cut after "wrote" no empty one (atomicfile). A path that names no regular file (a
// device such as /dev/null, a FIFO) is written into as it is, never replaced by a file, and a
// symbolic link's target is replaced, not the link.
func writeOutput(path string, download func(io.Writer) error) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		if fi.IsDir() {
			return usagef("-o %s: a directory, not a file", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = download(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	f, err := atomicfile.CreateLike(path, ".hydra-")
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := download(f); err != nil {
		return err
	}
	return f.Commit()
}

// interrupted is err, or when ctx was ended by a signal (Ctrl-C) an error that says so.
func interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return err
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func runCancel(args []string, stdout, stderr io.Writer) error {
	fs, af := newClientFlags("cancel ID", stdout)
	asJSON := fs.Bool("json", false, "print the job after the cancel as JSON")
	id, c, ctx, cancel, err := jobClient(fs, af, args, writeRequestTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	v, err := c.CancelJob(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	fmt.Fprintln(stdout, cancelLine(id, v))
	return nil
}

// cancelLine says what a cancel left: the units done, and, when some still waited for their
// audit, how many of them were checked, since a stopped job is not audited any more and its
// partial result keeps only the checked ones ('hydra result' counts those, not the done ones).
func cancelLine(id string, v webui.JobView) string {
	done := fmt.Sprintf("%s of %s %s done", group(v.DoneUnits), group(v.TotalUnits), v.Unit)
	kept := "its partial result keeps them"
	if v.ClearedUnits < v.DoneUnits {
		done += fmt.Sprintf(", %s of them checked by audits", group(v.ClearedUnits))
		kept = "its partial result keeps the checked ones"
	}
	return fmt.Sprintf("cancelled job %s at %.1f%% (%s); %s ('hydra rm %s' deletes it)", id, 100*v.Progress, done, kept, id)
}

func runRm(args []string, stdout, stderr io.Writer) error {
	fs, af := newClientFlags("rm ID", stdout)
	id, c, ctx, cancel, err := jobClient(fs, af, args, writeRequestTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	if err := c.DeleteJob(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed job %s and its results\n", id)
	return nil
}

// group writes n with thousands separators: 100,000,000,000.
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// age is how long ago t was, in one unit: 42s, 5m, 3h, 2d.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func roundDur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
