package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestAPIDocNamesEveryMetric: docs/api.md's /metrics section names every metric the node
// defines (node/metrics.go, read as source: the names are its prometheus.NewDesc calls).
func TestAPIDocNamesEveryMetric(t *testing.T) {
	src, err := os.ReadFile("node/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`prometheus\.NewDesc\("([a-z0-9_]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(names) < 10 {
		t.Fatalf("found %d metrics in node/metrics.go: the pattern no longer matches how they are defined", len(names))
	}
	for _, m := range names {
		if !regexp.MustCompile("`" + m[1] + "[`{]").Match(doc) {
			t.Errorf("docs/api.md (GET /metrics) does not name the metric %s", m[1])
		}
	}
}

// TestDesignMapNamesEveryPackage: the map of packages in docs/design.md §1 has a line for every
// directory of Go code (scripts/ and examples/ have one line each), and every directory it names
// exists, so a package added, moved or removed shows up in the map.
func TestDesignMapNamesEveryPackage(t *testing.T) {
	b, err := os.ReadFile("docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## 1. Shape")
	if start < 0 {
		t.Fatal(`docs/design.md has no "## 1. Shape"`)
	}
	block := strings.SplitN(doc[start:], "```", 3)
	if len(block) < 3 {
		t.Fatal("docs/design.md §1 has no code block")
	}
	mapped := map[string]bool{}
	for _, line := range strings.Split(block[1], "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(line, " ") {
			for _, name := range strings.Split(f[0], ",") {
				if name = strings.TrimSuffix(name, "/"); name != "" {
					mapped[name] = true
				}
			}
		}
	}
	for name := range mapped {
		if name == "main.go" {
			continue
		}
		if st, err := os.Stat(name); err != nil || !st.IsDir() {
			t.Errorf("docs/design.md §1 names %s/, which is not a directory", name)
		}
	}
	walkGoFiles(t, []string{"scripts", "examples", "docs"}, func(path string) {
		dir := filepath.ToSlash(filepath.Dir(path))
		if strings.HasSuffix(path, "_test.go") || dir == "." || mapped[dir] {
			return
		}
		t.Errorf("docs/design.md §1 has no line for %s/ (its Go code: %s)", dir, path)
		mapped[dir] = true // once per directory
	})
}

// TestNoGoFileOver600Lines: every Go file, tests included, stays at most 600 lines (docs/design.md
// §1: a file that grows past that is split by concern), so a reader can take in any file at once;
// scripts/internal/codestats reports the same limit.
func TestNoGoFileOver600Lines(t *testing.T) {
	const limit = 600
	walkGoFiles(t, nil, func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n > limit {
			t.Errorf("%s has %d lines, more than %d: split it by concern", path, n, limit)
		}
	})
}

// goPackageDirs returns every directory holding non-test Go files, testdata and hidden
// directories left out, mapped to those files' names.
func goPackageDirs(t *testing.T) map[string][]string {
	t.Helper()
	dirs := map[string][]string{}
	walkGoFiles(t, nil, func(path string) {
		if !strings.HasSuffix(path, "_test.go") {
			dir := filepath.ToSlash(filepath.Dir(path))
			dirs[dir] = append(dirs[dir], filepath.Base(path))
		}
	})
	return dirs
}

// TestEveryPackageHasOneDocComment: every package says what it owns in one package doc
// comment (docs/design.md §1: a package's doc comment is the level below the map), neither
// none nor two that go doc would run together.
func TestEveryPackageHasOneDocComment(t *testing.T) {
	for dir, files := range goPackageDirs(t) {
		var with []string
		for _, name := range files {
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
				with = append(with, name)
			}
		}
		switch {
		case len(with) == 0:
			t.Errorf("%s/ has no package doc comment: say what it owns and what it must never import (a doc.go when it needs more)", dir)
		case len(with) > 1:
			t.Errorf("%s/ has package doc comments in %v: keep one", dir, with)
		}
	}
}

// TestFileMapsNameEveryFile: a package doc comment with a "Where each part lives" map names
// every Go file of its package (a pattern such as datalock*.go names several), and each name
// matches a file: files are split and added often, and a map that misses one sends a reader
// to the wrong file.
func TestFileMapsNameEveryFile(t *testing.T) {
	const heading = "# Where each part lives"
	maps := 0
	for dir, files := range goPackageDirs(t) {
		b, err := os.ReadFile(filepath.Join(dir, "doc.go"))
		if err != nil || !strings.Contains(string(b), "// "+heading+"\n") {
			continue
		}
		maps++
		block := string(b)[strings.Index(string(b), heading):]
		var patterns []string
		for _, line := range strings.Split(block, "\n")[1:] {
			if !strings.HasPrefix(line, "//") {
				break
			}
			if !strings.HasPrefix(line, "//\t") {
				continue
			}
			for _, w := range strings.Fields(strings.ReplaceAll(line[3:], ",", " ")) {
				if strings.HasSuffix(w, ".go") {
					patterns = append(patterns, w)
				}
			}
		}
		named := map[string]bool{"doc.go": true}
		for _, p := range patterns {
			hit := false
			for _, f := range files {
				if ok, err := filepath.Match(p, f); err != nil {
					t.Fatalf("%s/doc.go: pattern %q: %v", dir, p, err)
				} else if ok {
					named[f], hit = true, true
				}
			}
			if !hit {
				t.Errorf("%s/doc.go's file map names %s, which is not a file of the package", dir, p)
			}
		}
		for _, f := range files {
			if !named[f] {
				t.Errorf("%s/doc.go's file map does not name %s: say what it holds", dir, f)
			}
		}
	}
	if maps < 3 {
		t.Errorf("found %d doc.go file maps (%q); consensus, compute and node have one", maps, heading)
	}
}

// TestInternalsNamesEveryMethod: docs/internals.md, the wiring diagram "checked against the
// code", names every exported method of the two types the rest of the node builds on,
// consensus.Raft and p2p.Host, and every exported function of their packages: eleven of
// Raft's (admission, eviction, settings) had been added without a line there.
func TestInternalsNamesEveryMethod(t *testing.T) {
	doc, err := os.ReadFile("docs/internals.md")
	if err != nil {
		t.Fatal(err)
	}
	for pkg, recv := range map[string]string{"consensus": "Raft", "p2p": "Host"} {
		files, err := filepath.Glob(filepath.Join(pkg, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || !fn.Name.IsExported() {
					continue
				}
				if fn.Recv != nil {
					star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
					if !ok {
						continue
					}
					if id, ok := star.X.(*ast.Ident); !ok || id.Name != recv {
						continue
					}
				}
				n++
				if !regexp.MustCompile(`\b` + fn.Name.Name + `\b`).Match(doc) {
					what := pkg + "." + fn.Name.Name
					if fn.Recv != nil {
						what = pkg + "." + recv + "." + fn.Name.Name
					}
					t.Errorf("docs/internals.md does not name %s", what)
				}
			}
		}
		if n < 10 {
			t.Errorf("found %d exported functions and %s methods in %s/: the scan no longer finds them", n, recv, pkg)
		}
	}
}

// TestInternalsVersionsAreGoMods: the versions docs/internals.md says are pinned are go.mod's,
// so a dependency upgrade that changes behaviour the page describes shows up there.
func TestInternalsVersionsAreGoMods(t *testing.T) {
	doc, err := os.ReadFile("docs/internals.md")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(doc), "Versions are pinned in go.mod")
	if i < 0 {
		t.Fatal(`docs/internals.md has no "Versions are pinned in go.mod"`)
	}
	sentence := string(doc[i:])
	sentence = sentence[:strings.Index(sentence, ")")]
	pins := regexp.MustCompile(`([a-z0-9/-]+) (v[0-9]+\.[0-9]+\.[0-9]+)`).FindAllStringSubmatch(sentence, -1)
	if len(pins) < 5 {
		t.Fatalf("found %d pinned versions in %q", len(pins), sentence)
	}
	for _, p := range pins {
		if !regexp.MustCompile(`(?m)^\s*(require\s+)?\S*/` + regexp.QuoteMeta(p[1]) + ` ` + regexp.QuoteMeta(p[2]) + `\b`).Match(mod) {
			t.Errorf("docs/internals.md says %s %s; go.mod requires another version", p[1], p[2])
		}
	}
	if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod); m == nil || !strings.Contains(string(doc), "Go "+string(m[1])+".") {
		t.Errorf("docs/internals.md does not say the Go version go.mod asks for")
	}
}

// walkGoFiles calls fn with the path of every Go file of the repository, tests included,
// leaving out hidden directories, testdata, node_modules and the top-level directories in
// skip: the one walk the docs tests share.
func walkGoFiles(t *testing.T, skip []string, fn func(path string)) {
	t.Helper()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			base := d.Name()
			if path != "." && (strings.HasPrefix(base, ".") || base == "testdata" || base == "node_modules" || slices.Contains(skip, path)) {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") {
			fn(path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
