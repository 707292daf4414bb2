package cli

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// Polling of --wait. Variables so that tests can run fast.
var (
	pollEvery    = time.Second // GET the job this often
	pollEveryTTY = 250 * time.Millisecond
	plainEvery   = 5 * time.Second // without a terminal, one progress line this often
	// maxPollErrors consecutive failed polls, failing for pollErrorsFor at least, end the wait:
	// the node asked restarting, or an election, passes. Counted in polls alone, a terminal's
	// four polls a second gave up after 2.5 s.
	maxPollErrors = 10
	pollErrorsFor = 30 * time.Second
	// maxUnseenPolls polls that find no job before the job was seen once, for unseenFor at least,
	// end the wait: a submit answered 202 (committed, not yet applied on the node asked) is
	// followed by 404s until that node catches up, which is not the job being removed.
	maxUnseenPolls = 60
	unseenFor      = time.Minute
)

// submitForms names every kind hydra submit takes, as the messages that say what to run quote it.
const submitForms = "'hydra submit pi …', 'hydra submit mandelbrot …' or 'hydra submit wasm …'"

func runSubmit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintln(stdout, "Usage: hydra submit pi|mandelbrot|wasm [flags]   ('hydra submit pi -h' for the flags)")
			return flag.ErrHelp
		}
		return usagef("say what to run: %s", submitForms)
	}
	kind, args := args[0], args[1:]
	var spec compute.JobSpec
	fs, af := newClientFlags("submit "+kind, stdout)
	name := fs.String("name", "", "job name shown in lists")
	priority := fs.Int("priority", 0, "share of the nodes when jobs run at once, 1–100 (default 1)")
	wait := fs.Bool("wait", false, "wait for the job: a progress bar, then the result")
	asJSON := fs.Bool("json", false, "print JSON (the job; with --wait the job and its result)")
	var samples, seed, center *string
	var width, height, maxIter *int
	var span *float64
	var out *string
	var raw *bool
	var module, items, reduce, params *string
	var chunkUnits *uint64
	if kind == "pi" || kind == "mandelbrot" {
		chunkUnits = fs.Uint64("chunk-units", 0, "fixed chunks of this many units (samples or rows), each with its own result: many tiny tasks in one job (default: sized to each node's speed)")
	}
	switch kind {
	case "wasm":
		module = fs.String("module", "", "the WebAssembly module file (uploaded first) or the SHA-256 of a stored one (required)")
		items = fs.String("items", "", "number of items: an integer, 1e9 style allowed (required)")
		reduce = fs.String("reduce", "sum", "how partial values combine: sum, min, max, xor or concat")
		params = fs.String("params", "", "bytes hydra_init receives, e.g. '{\"k\":3}'")
		out = fs.String("o", "", "with --wait and --reduce concat: write the output bytes to this file")
	case "pi":
		samples = fs.String("samples", "", "number of samples: an integer, 1e11 style allowed (required)")
		seed = fs.String("seed", "", "seed, 0–18446744073709551615 (default: random, shown in the job)")
	case "mandelbrot":
		width = fs.Int("width", 1920, "image width in pixels (1–16384)")
		height = fs.Int("height", 1080, "image height in pixels, = rows of work (1–16384)")
		center = fs.String("center", "-0.5,0", "centre of the view X,Y in the complex plane")
		span = fs.Float64("span", 3.5, "width of the view in the complex plane")
		maxIter = fs.Int("max-iter", 1000, "iterations before a point counts as inside (1–1000000)")
		out = fs.String("o", "", "with --wait: write the image to this file")
		raw = fs.Bool("raw", false, "with -o: write raw uint32 little-endian counts instead of a PNG")
	default:
		return usagef("unknown job kind %q: %s", kind, submitForms)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	spec.Kind, spec.Name, spec.Priority = compute.Kind(kind), *name, *priority
	switch kind {
	case "pi":
		if *samples == "" {
			return usagef("--samples is required (e.g. --samples 1e9)")
		}
		n, err := webui.ParseUintExact(strings.ReplaceAll(*samples, "_", ""))
		if err != nil {
			return usagef("--samples %s: %v (an exact integer such as 1000000 or 1e6)", *samples, err)
		}
		s, err := parseSeed(*seed)
		if err != nil {
			return err
		}
		spec.Pi = &compute.PiParams{Samples: n, Seed: s}
	case "wasm":
		if *module == "" || *items == "" {
			return usagef("--module and --items are required (e.g. --module primes.wasm --items 1e9)")
		}
		n, err := webui.ParseUintExact(strings.ReplaceAll(*items, "_", ""))
		if err != nil {
			return usagef("--items %s: %v (an exact integer such as 1000000 or 1e6)", *items, err)
		}
		spec.Wasm = &compute.WasmParams{Module: *module, Items: n, Reduce: compute.Reduce(*reduce), Params: *params}
		if !isSHA256(*module) {
			spec.Wasm.Module = strings.Repeat("0", 64) // checked below with the real hash after upload
		}
		if *out != "" && !*wait {
			return usagef("-o needs --wait (or fetch the output later from /api/v1/jobs/ID/result.bin)")
		}
		if *out != "" && compute.Reduce(*reduce) != compute.ReduceConcat {
			return usagef("-o is for the output of --reduce concat; a %s job's value is printed", *reduce)
		}
	case "mandelbrot":
		cx, cy, err := parseCenter(*center)
		if err != nil {
			return err
		}
		spec.Mandel = &compute.MandelParams{Width: *width, Height: *height, CenterX: cx, CenterY: cy, Span: *span, MaxIter: *maxIter}
		if *out != "" && !*wait {
			return usagef("-o needs --wait (or fetch the image later with 'hydra result ID -o FILE')")
		}
		if *raw && *out == "" {
			return usagef("--raw needs -o FILE")
		}
	}
	if chunkUnits != nil {
		spec.ChunkUnits = *chunkUnits
	}
	if out != nil && *out == "-" && *asJSON {
		return usagef("-o - and --json would both write to stdout: give -o a file")
	}
	if *priority < 0 || *priority > compute.MaxPriority {
		return usagef("--priority %d is outside 1–%d", *priority, compute.MaxPriority)
	}
	// Check the spec exactly as the API will: the same decoder, the same messages.
	err := spec.Validate()
	if err == nil {
		var body []byte
		if body, err = webui.EncodeJobRequest(spec); err == nil {
			_, err = webui.DecodeJobRequest(body)
		}
	}
	if err != nil {
		return usagef("%s", flagNames(err.Error()))
	}

	c, err := af.client()
	if err != nil {
		return err
	}
	if kind == "wasm" && !isSHA256(*module) {
		code, err := os.ReadFile(*module)
		if err != nil {
			return usagef("--module: %v", err)
		}
		// A module of up to 32 MiB over a slow link: its own deadline, not the submit's.
		ctx, cancel := context.WithTimeout(context.Background(), uploadTimeout)
		info, err := c.UploadModule(ctx, code)
		cancel()
		if err != nil {
			return fmt.Errorf("upload %s: %w", *module, err)
		}
		spec.Wasm.Module = info.SHA256
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeRequestTimeout)
	defer cancel()
	v, err := c.SubmitJob(ctx, spec)
	if err != nil {
		return err
	}
	if !*wait {
		if *asJSON {
			return printJSON(stdout, v)
		}
		fmt.Fprintf(stdout, "submitted job %s: %s %s\n", v.ID, kind, describeParams(v.Spec))
		fmt.Fprintf(stdout, "follow it with 'hydra job %s', fetch the result with 'hydra result %s'\n", v.ID, v.ID)
		return nil
	}
	if !*asJSON {
		fmt.Fprintf(stderr, "job %s: %s %s\n", v.ID, kind, describeParams(v.Spec))
	}
	// The signals end the wait and the download after it alike (the download leaves no
	// partial file): caught for the wait alone, they would go unanswered during the download.
	sigCtx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	final, err := waitForJob(sigCtx, c, v.ID, stderr)
	if err != nil {
		return err
	}
	if err := finishWait(sigCtx, c, final, stdout, stderr, *asJSON, out, raw); err != nil {
		if sigCtx.Err() != nil {
			return fmt.Errorf("interrupted; job %s is %s ('hydra result %s')", final.ID, final.State, final.ID)
		}
		return err
	}
	return nil
}

// finishWait prints the result of a job --wait saw finish. With -o - the output goes to
// stdout and what is said about it to stderr, so that stdout holds the output alone.
func finishWait(sigCtx context.Context, c *webui.Client, v webui.JobView, stdout, stderr io.Writer, asJSON bool, out *string, raw *bool) error {
	ctx, cancel := context.WithTimeout(sigCtx, requestTimeout)
	defer cancel()
	res, err := c.Result(ctx, v.ID)
	if err != nil {
		return err
	}
	if res.MandelSummary != nil && out != nil && *out != "" {
		if err := writeImage(sigCtx, c, v.ID, *out, *raw, stdout); err != nil {
			return err
		}
	}
	text := stdout
	if out != nil && *out == "-" {
		text = stderr
	}
	if asJSON {
		if err := printJSON(stdout, struct {
			Job    webui.JobView    `json:"job"`
			Result webui.ResultView `json:"result"`
		}{v, res}); err != nil {
			return err
		}
	} else {
		switch {
		case res.PiResult != nil:
			printPi(text, res)
		case res.WasmResult != nil:
			if err := printWasm(sigCtx, c, v, res, stdout, out); err != nil {
				return err
			}
		case res.MandelSummary != nil && out != nil && *out == "-":
			fmt.Fprintf(text, "wrote the image to stdout (%d×%d, %s)\n", res.Width, res.Height, imageKind(*raw))
		case res.MandelSummary != nil && out != nil && *out != "":
			fmt.Fprintf(text, "wrote %s (%d×%d, %s)\n", *out, res.Width, res.Height, imageKind(*raw))
		case res.MandelSummary != nil:
			fmt.Fprintf(text, "image ready: 'hydra result %s -o FILE.png'\n", v.ID)
		}
		if v.StartedAt.IsZero() || v.FinishedAt.IsZero() {
			fmt.Fprintln(text)
		} else {
			fmt.Fprintf(text, "\nran %s, %.1f s of compute on %d node(s)\n", roundDur(v.FinishedAt.Sub(v.StartedAt)), v.ComputeSeconds, len(v.Nodes))
		}
		if err := printContributions(ctx, text, c, v); err != nil {
			return err
		}
	}
	if v.State == compute.StateFailed {
		return fmt.Errorf("job %s failed: %s", v.ID, v.Reason)
	}
	if v.State == compute.StateCancelled {
		return fmt.Errorf("job %s was cancelled at %.1f%% (the result above is partial)", v.ID, 100*v.Progress)
	}
	return nil
}

// waitForJob polls a job until it is finished, drawing progress on stderr: a bar
// redrawn in place on a terminal, a line every plainEvery otherwise.
func waitForJob(ctx context.Context, c *webui.Client, id string, stderr io.Writer) (webui.JobView, error) {
	tty := isTerminal(stderr)
	every := pollEvery
	if tty {
		every = pollEveryTTY
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	p := progress{w: stderr, tty: tty, start: time.Now()}
	fails, unseen, seen := 0, 0, false
	var failingSince, unseenSince time.Time
	for {
		pctx, cancel := context.WithTimeout(ctx, requestTimeout)
		v, err := c.Job(pctx, id)
		cancel()
		var ae *webui.APIError
		switch {
		case ctx.Err() != nil:
			p.end()
			return v, fmt.Errorf("stopped waiting; job %s goes on ('hydra job %s', 'hydra cancel %s')", id, id, id)
		case errors.As(err, &ae) && ae.Status == 404 && !seen:
			if unseen++; unseen == 1 {
				unseenSince = time.Now()
			}
			if unseen >= maxUnseenPolls && time.Since(unseenSince) >= unseenFor {
				p.end()
				return v, fmt.Errorf("job %s was accepted but this node has not shown it after %d polls: %w", id, unseen, err)
			}
		case errors.As(err, &ae) && ae.Status == 404:
			p.end()
			return v, fmt.Errorf("job %s is gone (removed while waiting)", id)
		case err != nil:
			if fails++; fails == 1 {
				failingSince = time.Now()
			}
			if fails >= maxPollErrors && time.Since(failingSince) >= pollErrorsFor {
				p.end()
				return v, fmt.Errorf("gave up waiting for job %s: %w", id, err)
			}
		default:
			fails, seen = 0, true
			now := time.Now()
			if v.State == compute.StateQueued && now.Sub(p.start) >= queuedHintAfter && now.Sub(p.hintAt) >= plainEvery {
				// A job that stays queued is waiting for a node to take work: say
				// why none does (every one paused, say, by its owner rules).
				sctx, cancel := context.WithTimeout(ctx, requestTimeout)
				if st, err := c.Status(sctx); err == nil {
					p.hint = noWorkerHint(st)
				}
				cancel()
				p.hintAt = now
			} else if v.State != compute.StateQueued {
				p.hint = ""
			}
			p.show(v, now)
			if v.State.Finished() {
				p.end()
				return v, nil
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// progress draws a job's progress.
type progress struct {
	w         io.Writer
	tty       bool
	start     time.Time
	drawn     bool      // a bar is on the terminal line
	lastLine  time.Time // last plain line
	lastState compute.JobState
	rateFrom  time.Time // first sight of progress, for the ETA
	rateUnits uint64
	hint      string    // why a queued job waits, if no node takes work
	hintAt    time.Time // when the hint was last asked for
}

// queuedHintAfter is how long a job stays queued before --wait asks the
// node's status why.
var queuedHintAfter = 10 * time.Second

// noWorkerHint says why no node takes work, from a status: "" when a node
// online is working, idle or throttled (it takes work; the job waits its
// turn), else each node's state and reason, so that a job queued for minutes
// on a busy machine does not leave its user guessing.
func noWorkerHint(st webui.Status) string {
	var why []string
	for _, n := range st.Nodes {
		if n.Online && (n.State == "working" || n.State == "idle" || n.State == "throttled") {
			return ""
		}
		w := clean(n.Name) + " " + clean(n.State)
		if !n.Online {
			w = clean(n.Name) + " offline"
		} else if n.Reason != "" {
			w += ": " + clean(n.Reason)
		}
		why = append(why, w)
	}
	if len(why) == 0 {
		return "no node takes work yet"
	}
	if len(why) > 4 {
		why = append(why[:4], fmt.Sprintf("%d more", len(why)-4))
	}
	return "no node takes work (" + strings.Join(why, ", ") + "; see 'hydra status')"
}

func (p *progress) show(v webui.JobView, now time.Time) {
	if p.rateFrom.IsZero() && v.State == compute.StateRunning {
		p.rateFrom, p.rateUnits = now, v.DoneUnits
	}
	status := fmt.Sprintf("%5.1f%%  %s/%s %s  %s  %s", 100*v.Progress, group(v.DoneUnits), group(v.TotalUnits), v.Unit,
		v.State, roundDur(now.Sub(p.start)))
	if eta, ok := p.eta(v, now); ok {
		status += "  ETA " + eta
	}
	if p.hint != "" {
		status += "  " + p.hint
	}
	if p.tty {
		const width = 30
		fill := min(width, int(v.Progress*width))
		fmt.Fprintf(p.w, "\r\033[K[%s%s] %s", strings.Repeat("█", fill), strings.Repeat("░", width-fill), status)
		p.drawn = true
		return
	}
	if p.lastLine.IsZero() || now.Sub(p.lastLine) >= plainEvery || v.State != p.lastState {
		fmt.Fprintln(p.w, "progress "+status)
		p.lastLine, p.lastState = now, v.State
	}
}

func (p *progress) eta(v webui.JobView, now time.Time) (string, bool) {
	if p.rateFrom.IsZero() || v.DoneUnits <= p.rateUnits || v.State.Finished() {
		return "", false
	}
	el := now.Sub(p.rateFrom)
	if el < time.Second {
		return "", false
	}
	rate := float64(v.DoneUnits-p.rateUnits) / el.Seconds()
	left := time.Duration(float64(v.TotalUnits-v.DoneUnits) / rate * float64(time.Second))
	return left.Round(time.Second).String(), true
}

func (p *progress) end() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// parseSeed reads --seed; empty picks a random seed.
func parseSeed(s string) (uint64, error) {
	if s == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("random seed: %w", err)
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, usagef("--seed %s: not an integer 0–18446744073709551615", s)
	}
	return v, nil
}

// parseCenter reads --center X,Y.
func parseCenter(s string) (float64, float64, error) {
	xs, ys, ok := strings.Cut(s, ",")
	x, err1 := strconv.ParseFloat(strings.TrimSpace(xs), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(ys), 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, usagef("--center %q: want X,Y (two numbers, e.g. -0.743643887,0.131825904)", s)
	}
	return x, y, nil
}

// flagNames rewrites the API's field names in a validation message into the
// CLI's flag names ("max_iter: …" → "--max-iter: …").
func flagNames(msg string) string {
	field, rest, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(field, " \"") {
		return msg
	}
	switch field {
	case "center_x", "center_y":
		return "--center: " + strings.Replace(field, "center_", "", 1) + " " + rest
	}
	return "--" + strings.ReplaceAll(field, "_", "-") + ": " + rest
}

func isSHA256(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// printWasm prints a WebAssembly job's value, or for concat writes (or points to) its output.
func printWasm(ctx context.Context, c *webui.Client, v webui.JobView, res webui.ResultView, stdout io.Writer, out *string) error {
	if res.Reduce != compute.ReduceConcat {
		fmt.Fprintf(stdout, "%s = %s over %s of %s items\n", res.Reduce, res.Value, group(res.DoneItems), group(res.Items))
		return nil
	}
	if out == nil || *out == "" {
		// The values hydra_map returned are summed beside the output (docs/wasm.md, Reducers).
		fmt.Fprintf(stdout, "sum of the returned values = %s over %s of %s items\n", res.Value, group(res.DoneItems), group(res.Items))
		fmt.Fprintf(stdout, "output bytes: 'hydra result %s -o FILE' writes them (GET %s)\n", v.ID, res.ResultBin)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*requestTimeout)
	defer cancel()
	download := func(w io.Writer) error {
		if _, err := c.Download(ctx, res.ResultBin, w); err != nil {
			return fmt.Errorf("job %s output: %w", v.ID, err)
		}
		return nil
	}
	if *out == "-" {
		return download(stdout)
	}
	if err := writeOutput(*out, download); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}
