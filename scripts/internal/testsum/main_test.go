package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

const mod = "example.com/m"

func run(t *testing.T, allow []string, input string) (string, *summary, bool) {
	t.Helper()
	var al allowList
	for _, a := range allow {
		al = append(al, regexp.MustCompile(a))
	}
	var out strings.Builder
	s := newSummary(mod, al, &out)
	if err := s.read(strings.NewReader(input)); err != nil {
		t.Fatal(err)
	}
	ok := s.finish("t")
	return out.String(), s, ok
}

const passing = `{"Action":"start","Package":"example.com/m/a"}
{"Action":"run","Package":"example.com/m/a","Test":"TestA"}
{"Action":"output","Package":"example.com/m/a","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestA","Output":"    a_test.go:9: noise\n"}
{"Action":"pass","Package":"example.com/m/a","Test":"TestA","Elapsed":0.1}
{"Action":"pass","Package":"example.com/m/a","Elapsed":0.2}
{"Action":"start","Package":"example.com/m/b"}
{"Action":"skip","Package":"example.com/m/b","Elapsed":0}
`

func TestPassQuietly(t *testing.T) {
	out, s, ok := run(t, nil, passing)
	if !ok || s.passed != 1 || s.failed != 0 {
		t.Fatalf("ok %v passed %d failed %d\n%s", ok, s.passed, s.failed, out)
	}
	if strings.Contains(out, "noise") {
		t.Errorf("a passing test's log was printed:\n%s", out)
	}
	for _, want := range []string{"ok  \texample.com/m/a", "?   \texample.com/m/b\t[no test files]", "t: PASS: 1 passed, 0 failed, 0 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

const skipping = `{"Action":"start","Package":"example.com/m/p2p/interop"}
{"Action":"run","Package":"example.com/m/p2p/interop","Test":"TestJS"}
{"Action":"output","Package":"example.com/m/p2p/interop","Test":"TestJS","Output":"=== RUN   TestJS\n"}
{"Action":"output","Package":"example.com/m/p2p/interop","Test":"TestJS","Output":"    interop_test.go:31: node not installed\n"}
{"Action":"output","Package":"example.com/m/p2p/interop","Test":"TestJS","Output":"--- SKIP: TestJS (0.00s)\n"}
{"Action":"skip","Package":"example.com/m/p2p/interop","Test":"TestJS","Elapsed":0}
{"Action":"pass","Package":"example.com/m/p2p/interop","Elapsed":0.01}
`

func TestSkipFailsUnlessAllowed(t *testing.T) {
	out, s, ok := run(t, nil, skipping)
	if ok || s.skipped != 1 {
		t.Fatalf("an unexpected skip passed (ok %v, skipped %d):\n%s", ok, s.skipped, out)
	}
	if !strings.Contains(out, "SKIP (NOT ALLOWED) p2p/interop.TestJS: interop_test.go:31: node not installed") {
		t.Errorf("skip line and reason missing:\n%s", out)
	}
	out, _, ok = run(t, []string{`^p2p/interop\.TestJS$`}, skipping)
	if !ok || !strings.Contains(out, "SKIP (allowed here) p2p/interop.TestJS") {
		t.Errorf("an allowed skip failed or was not shown (ok %v):\n%s", ok, out)
	}
	if _, _, ok = run(t, []string{`^p2p\.TestJS$`}, skipping); ok {
		t.Error("an allow pattern for another package let the skip pass")
	}
}

const failing = `{"Action":"start","Package":"example.com/m/a"}
{"Action":"run","Package":"example.com/m/a","Test":"TestBad"}
{"Action":"output","Package":"example.com/m/a","Test":"TestBad","Output":"    a_test.go:5: boom\n"}
{"Action":"fail","Package":"example.com/m/a","Test":"TestBad","Elapsed":0.1}
{"Action":"run","Package":"example.com/m/a","Test":"TestHang"}
{"Action":"output","Package":"example.com/m/a","Test":"TestHang","Output":"    a_test.go:9: waiting\n"}
{"Action":"output","Package":"example.com/m/a","Output":"panic: test timed out after 1s\n"}
{"Action":"fail","Package":"example.com/m/a","Elapsed":1}
`

func TestFailuresPrintTheirOutput(t *testing.T) {
	out, s, ok := run(t, nil, failing)
	if ok || s.failed != 2 {
		t.Fatalf("ok %v failed %d:\n%s", ok, s.failed, out)
	}
	for _, want := range []string{"--- FAIL: a TestBad", "boom", "--- FAIL (unfinished): a TestHang", "waiting",
		"panic: test timed out", "FAIL\texample.com/m/a", "t: FAIL: 0 passed, 2 failed, 0 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBuildFailureAndNoise(t *testing.T) {
	in := "# example.com/m/a\nvet: something\n" +
		`{"ImportPath":"example.com/m/a [example.com/m/a.test]","Action":"build-output","Output":"a.go:3:1: syntax error\n"}
{"ImportPath":"example.com/m/a [example.com/m/a.test]","Action":"build-fail"}
{"Action":"start","Package":"example.com/m/a"}
{"Action":"output","Package":"example.com/m/a","Output":"FAIL\texample.com/m/a [build failed]\n"}
{"Action":"fail","Package":"example.com/m/a","Elapsed":0,"FailedBuild":"example.com/m/a [example.com/m/a.test]"}
`
	out, _, ok := run(t, nil, in)
	if ok {
		t.Fatalf("a build failure passed:\n%s", out)
	}
	for _, want := range []string{"vet: something", "syntax error", "[build failed]"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, _, ok := run(t, nil, ""); ok {
		t.Error("no input at all passed")
	}
	var buf strings.Builder
	s := newSummary(mod, nil, &buf)
	s.min = 2
	if err := s.read(strings.NewReader(passing)); err != nil {
		t.Fatal(err)
	}
	if s.finish("t") || !strings.Contains(buf.String(), "at least 2 must pass") {
		t.Errorf("one test passed where two must:\n%s", buf.String())
	}
}

// FuzzRead: on any input the reader passes every line that is not an event through, counts
// exactly the tests the events say passed and skipped, and never says PASS for a run with a
// failure, a skip or no package; and a stream of events written as go test -json writes them
// (one JSON object a line, generated from ops) reads back as a model of the stream says: the
// same passed, failed and skipped counts and the same verdict.
func FuzzRead(f *testing.F) {
	for _, s := range []string{passing, skipping, failing, "{", `{"Action":"fail","Test":"x"}`} {
		f.Add(s, []byte{})
	}
	f.Add("", []byte{0, 0, 0, 0, 1, 1, 0, 1, 3, 0, 0, 3})          // start, run, pass, package pass
	f.Add("", []byte{0, 0, 0, 0, 1, 1, 0, 1, 2, 0, 0, 4})          // a test left running when its package fails
	f.Add("", []byte{0, 0, 0, 1, 2, 1, 1, 2, 5, 0, 0, 3, 2, 0, 5}) // skips
	f.Fuzz(func(t *testing.T, in string, ops []byte) {
		checkRaw(t, in)
		checkStream(t, ops)
	})
}

// checkRaw runs the reader on in and checks what holds for any input.
func checkRaw(t *testing.T, in string) {
	var out strings.Builder
	s := newSummary(mod, nil, &out)
	if err := s.read(strings.NewReader(in)); err != nil {
		return // a line past the scanner's limit
	}
	ok := s.finish("f")
	var passed, skipped, failEvents int
	var sawPackage, pkgFailed bool
	for line := range strings.Lines(in) {
		line = strings.TrimSuffix(line, "\n")
		line = strings.TrimSuffix(line, "\r") // bufio.ScanLines drops a \r before \n
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal([]byte(line), &e) != nil {
			if !strings.Contains(out.String(), line+"\n") {
				t.Fatalf("line %q not passed through:\n%s", line, out.String())
			}
			continue
		}
		if e.Action == "build-fail" {
			pkgFailed = true
		}
		if e.Package == "" || e.Action == "build-output" || e.Action == "build-fail" {
			continue
		}
		switch {
		case e.Action == "start":
			sawPackage = true
		case e.Test == "" && (e.Action == "pass" || e.Action == "skip"):
			sawPackage = true
		case e.Test == "" && e.Action == "fail":
			sawPackage, pkgFailed = true, true
		case e.Action == "pass":
			passed++
		case e.Action == "skip":
			skipped++
		case e.Action == "fail":
			failEvents++
		}
	}
	if s.passed != passed || s.skipped != skipped || s.failed < failEvents {
		t.Fatalf("counted %d passed, %d skipped, %d failed; the events say %d, %d, at least %d", s.passed, s.skipped, s.failed, passed, skipped, failEvents)
	}
	if ok && (failEvents > 0 || skipped > 0 || pkgFailed || !sawPackage) {
		t.Fatalf("PASS for %d failures, %d skips, a package failure %v, a package seen %v:\n%s", failEvents, skipped, pkgFailed, sawPackage, out.String())
	}
}

// checkStream writes the events ops describe (three bytes each: package, test, action) as
// go test -json does and checks the reader against a model of the stream.
func checkStream(t *testing.T, ops []byte) {
	pkgs := []string{mod, mod + "/a", "other.org/x"}
	tests := []string{"", "TestA", "TestB", "TestB/sub"}
	actions := []string{"start", "run", "output", "pass", "fail", "skip"}
	var in strings.Builder
	running := map[string]bool{}
	var passed, failed, skipped int
	var sawPackage, pkgFailed bool
	var failLines []string
	for i := 0; i+2 < len(ops) && i < 3*500; i += 3 {
		e := event{Package: pkgs[int(ops[i])%len(pkgs)], Test: tests[int(ops[i+1])%len(tests)], Action: actions[int(ops[i+2])%len(actions)]}
		if e.Action == "output" {
			e.Output = fmt.Sprintf("line %d\n", i)
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		in.Write(append(b, '\n'))
		k := key(e.Package, e.Test)
		switch {
		case e.Action == "start":
			sawPackage = true
		case e.Action == "run":
			running[k] = true
		case e.Action == "output":
		case e.Test == "":
			sawPackage = true
			if e.Action == "fail" {
				pkgFailed = true
				for rk := range running {
					if p, _, _ := strings.Cut(rk, "\x00"); p == e.Package {
						failed++
						delete(running, rk)
					}
				}
			}
		default:
			delete(running, k)
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failed++
				rel := strings.TrimPrefix(strings.TrimPrefix(e.Package, mod), "/")
				if rel == "" {
					rel = "."
				}
				failLines = append(failLines, fmt.Sprintf("--- FAIL: %s %s\n", rel, e.Test))
			case "skip":
				skipped++
			}
		}
	}
	var out strings.Builder
	s := newSummary(mod, nil, &out)
	if err := s.read(strings.NewReader(in.String())); err != nil {
		t.Fatal(err)
	}
	ok := s.finish("f")
	want := failed == 0 && skipped == 0 && !pkgFailed && sawPackage
	if s.passed != passed || s.failed != failed || s.skipped != skipped || ok != want {
		t.Fatalf("read %d passed, %d failed, %d skipped, ok %v; wrote %d, %d, %d, ok %v:\n%s\n%s", s.passed, s.failed, s.skipped, ok, passed, failed, skipped, want, in.String(), out.String())
	}
	for _, l := range failLines {
		if !strings.Contains(out.String(), l) {
			t.Fatalf("output lacks %q:\n%s", l, out.String())
		}
	}
}

func TestSlowestListsTopLevelTestsLongestFirst(t *testing.T) {
	const in = `{"Action":"start","Package":"example.com/m/a"}
{"Action":"run","Package":"example.com/m/a","Test":"TestQuick"}
{"Action":"pass","Package":"example.com/m/a","Test":"TestQuick","Elapsed":0.5}
{"Action":"run","Package":"example.com/m/a","Test":"TestLong"}
{"Action":"run","Package":"example.com/m/a","Test":"TestLong/sub"}
{"Action":"pass","Package":"example.com/m/a","Test":"TestLong/sub","Elapsed":30}
{"Action":"pass","Package":"example.com/m/a","Test":"TestLong","Elapsed":31.25}
{"Action":"run","Package":"example.com/m/a","Test":"TestMid"}
{"Action":"fail","Package":"example.com/m/a","Test":"TestMid","Elapsed":7}
{"Action":"fail","Package":"example.com/m/a","Elapsed":40}
`
	var out strings.Builder
	s := newSummary(mod, nil, &out)
	s.slowest = 2
	if err := s.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	s.finish("t")
	want := "slowest 2 of 3 tests: a.TestLong 31.2s; a.TestMid 7.0s;\n"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "t: FAIL") {
		t.Errorf("the summary line is not last: %q", last)
	}
}
