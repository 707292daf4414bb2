// Command testsum reads `go test -json` on stdin and prints what a person needs from a CI log:
// one line per package as go test prints it ("ok", "FAIL", "?"), the full output of every test
// that failed (and of a package that failed outside its tests: a panic, a timeout, a build
// error), and one line per skipped test with its reason. It then fails (exit 1) on any failure
// and on any skip it was not told to expect, so a suite cannot pass by skipping: a test that
// skips because a tool is missing shows up and stops CI, rather than printing "ok".
//
// Usage:
//
//	go test -json ./... | testsum [-allow REGEXP]... [-min N] [-tally FILE] [-label NAME] [-slowest N]
//
// Each -allow is a regular expression matched against "PKG.TEST" (PKG relative to the module,
// "." for its root; TEST with subtests as go test names them), e.g.
// -allow '^p2p/interop\.TestJSLibp2pDialsPingsIdentifies$'. scripts/test passes the skips it
// allows on the machine at hand, and none when HYDRA_REQUIRE_ALL=1 (CI). -tally appends
// "PASSED FAILED SKIPPED" to FILE so scripts/test can total several runs. -slowest N lists the
// N top-level tests that took longest, so a CI run that grows slow says which tests it waited for.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json), including the build events of Go ≥ 1.24.
type event struct {
	Time        time.Time
	Action      string
	Package     string
	ImportPath  string // build-output, build-fail
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
}

type allowList []*regexp.Regexp

func (a *allowList) String() string { return fmt.Sprint(*a) }

func (a *allowList) Set(s string) error {
	re, err := regexp.Compile(s)
	if err != nil {
		return fmt.Errorf("-allow %q: %w", s, err)
	}
	*a = append(*a, re)
	return nil
}

func main() {
	var allow allowList
	flag.Var(&allow, "allow", "regexp of PKG.TEST allowed to skip (repeatable)")
	tally := flag.String("tally", "", "append \"passed failed skipped\" to this file")
	label := flag.String("label", "go test", "name of this run in the summary line")
	minPassed := flag.Int("min", 0, "fail unless at least this many tests passed (a -run pattern that matches nothing runs nothing)")
	slowest := flag.Int("slowest", 0, "list this many of the slowest top-level tests before the summary line")
	flag.Parse()
	if *slowest < 0 || *minPassed < 0 {
		fmt.Fprintln(os.Stderr, "testsum: -slowest and -min must be ≥ 0")
		os.Exit(2)
	}

	s := newSummary(modulePath(), allow, os.Stdout)
	s.min = *minPassed
	s.slowest = *slowest
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		os.Exit(2)
	}
	ok := s.finish(*label)
	if *tally != "" {
		if err := appendTally(*tally, s.passed, s.failed, s.skipped); err != nil {
			fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
			os.Exit(2)
		}
	}
	if !ok {
		os.Exit(1)
	}
}

func appendTally(path string, passed, failed, skipped int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("tally: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %d %d\n", passed, failed, skipped)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("tally %s: %w", path, err)
	}
	return nil
}

// modulePath reads the module path from ./go.mod so package names print relative to it.
func modulePath() string {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// summary accumulates the events of one `go test -json` run.
type summary struct {
	module string
	allow  allowList
	out    io.Writer

	output  map[string][]string // "pkg\x00test" (test "" for the package) → output lines
	running map[string]bool     // tests started and not finished
	skips   []string            // lines to print at the end
	badSkip []string            // skips nobody allowed

	min                     int // fewest tests that must pass
	slowest                 int // how many of the slowest top-level tests finish lists
	times                   []testTime
	passed, failed, skipped int
	pkgFailed               bool
	sawPackage              bool
}

// testTime is how long a top-level test ran, for -slowest.
type testTime struct {
	name    string // PKG.TEST, PKG relative to the module
	elapsed float64
}

func newSummary(module string, allow allowList, out io.Writer) *summary {
	return &summary{module: module, allow: allow, out: out, output: map[string][]string{}, running: map[string]bool{}}
}

func key(pkg, test string) string { return pkg + "\x00" + test }

// rel names a package relative to the module ("." for its root).
func (s *summary) rel(pkg string) string {
	if pkg == s.module {
		return "."
	}
	if s.module != "" {
		if r, ok := strings.CutPrefix(pkg, s.module+"/"); ok {
			return r
		}
	}
	return pkg
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event (go vet output, a message of the go command): pass it on.
			fmt.Fprintf(s.out, "%s\n", line)
			continue
		}
		s.handle(e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read go test -json: %w", err)
	}
	return nil
}

func (s *summary) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
		return
	case "build-fail":
		s.pkgFailed = true
		return
	}
	if e.Package == "" {
		return
	}
	k := key(e.Package, e.Test)
	switch e.Action {
	case "start":
		s.sawPackage = true
	case "run":
		s.running[k] = true
	case "output":
		s.output[k] = append(s.output[k], e.Output)
	case "pass", "fail", "skip":
		if e.Test == "" {
			s.endPackage(e)
			return
		}
		delete(s.running, k)
		if !strings.Contains(e.Test, "/") && e.Action != "skip" {
			s.times = append(s.times, testTime{s.rel(e.Package) + "." + e.Test, e.Elapsed})
		}
		switch e.Action {
		case "pass":
			s.passed++
		case "fail":
			s.failed++
			fmt.Fprintf(s.out, "--- FAIL: %s %s\n", s.rel(e.Package), e.Test)
			s.printOutput(k)
		case "skip":
			s.skipped++
			s.skip(e.Package, e.Test, k)
		}
		delete(s.output, k)
	}
}

// skip records a skipped test with its reason, allowed or not.
func (s *summary) skip(pkg, test, k string) {
	name := s.rel(pkg) + "." + test
	var reason []string
	for _, l := range s.output[k] {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		reason = append(reason, l)
	}
	why := strings.Join(reason, " / ")
	if slices.ContainsFunc(s.allow, func(re *regexp.Regexp) bool { return re.MatchString(name) }) {
		s.skips = append(s.skips, fmt.Sprintf("SKIP (allowed here) %s: %s", name, why))
		return
	}
	line := fmt.Sprintf("SKIP (NOT ALLOWED) %s: %s", name, why)
	s.badSkip = append(s.badSkip, name)
	s.skips = append(s.skips, line)
	fmt.Fprintln(s.out, line)
}

// endPackage prints the package's line; a package that failed outside its tests (a panic, a
// timeout, TestMain) prints its own output and that of the tests it left running.
func (s *summary) endPackage(e event) {
	s.sawPackage = true
	pkg := e.Package
	switch e.Action {
	case "pass":
		fmt.Fprintf(s.out, "ok  \t%s\t%.3fs\n", pkg, e.Elapsed)
	case "skip": // a package without test files, not a skipped test
		fmt.Fprintf(s.out, "?   \t%s\t[no test files]\n", pkg)
	case "fail":
		s.pkgFailed = true
		var left []string
		for k := range s.running {
			if p, t, _ := strings.Cut(k, "\x00"); p == pkg {
				left = append(left, t)
			}
		}
		slices.Sort(left)
		for _, t := range left {
			s.failed++
			fmt.Fprintf(s.out, "--- FAIL (unfinished): %s %s\n", s.rel(pkg), t)
			s.printOutput(key(pkg, t))
			delete(s.running, key(pkg, t))
		}
		s.printOutput(key(pkg, ""))
		suffix := ""
		if e.FailedBuild != "" {
			suffix = " [build failed]"
		}
		fmt.Fprintf(s.out, "FAIL\t%s\t%.3fs%s\n", pkg, e.Elapsed, suffix)
	}
	for k := range s.output {
		if p, _, _ := strings.Cut(k, "\x00"); p == pkg {
			delete(s.output, k)
		}
	}
}

func (s *summary) printOutput(k string) {
	for _, l := range s.output[k] {
		fmt.Fprint(s.out, l)
		if !strings.HasSuffix(l, "\n") {
			fmt.Fprintln(s.out)
		}
	}
}

// finish prints the skips and the summary line and reports whether the run passed.
func (s *summary) finish(label string) bool {
	for _, l := range s.skips {
		fmt.Fprintln(s.out, l)
	}
	if s.slowest > 0 && len(s.times) > 0 {
		slices.SortStableFunc(s.times, func(a, b testTime) int { return cmp.Compare(b.elapsed, a.elapsed) })
		n := min(s.slowest, len(s.times))
		fmt.Fprintf(s.out, "slowest %d of %d tests:", n, len(s.times))
		for _, t := range s.times[:n] {
			fmt.Fprintf(s.out, " %s %.1fs;", t.name, t.elapsed)
		}
		fmt.Fprintln(s.out)
	}
	ok := s.failed == 0 && !s.pkgFailed && len(s.badSkip) == 0 && s.sawPackage && s.passed >= s.min
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(s.out, "%s: %s: %d passed, %d failed, %d skipped", label, verdict, s.passed, s.failed, s.skipped)
	if len(s.badSkip) > 0 {
		fmt.Fprintf(s.out, " (not allowed to skip: %s)", strings.Join(s.badSkip, ", "))
	}
	if s.passed < s.min {
		fmt.Fprintf(s.out, " (at least %d must pass)", s.min)
	}
	if !s.sawPackage {
		fmt.Fprint(s.out, " (no test events: did go test run?)")
	}
	fmt.Fprintln(s.out)
	return ok
}
