package main

import (
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

// FuzzRead: no input makes the reader panic or fail to finish.
func FuzzRead(f *testing.F) {
	for _, s := range []string{passing, skipping, failing, "{", `{"Action":"fail","Test":"x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var out strings.Builder
		s := newSummary(mod, nil, &out)
		_ = s.read(strings.NewReader(in))
		s.finish("f")
	})
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
