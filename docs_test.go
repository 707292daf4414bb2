package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			base := d.Name()
			if path != "." && (strings.HasPrefix(base, ".") || base == "testdata" || base == "node_modules" ||
				path == "scripts" || path == "examples" || path == "docs") {
				return fs.SkipDir
			}
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || dir == "." || mapped[dir] {
			return nil
		}
		t.Errorf("docs/design.md §1 has no line for %s/ (its Go code: %s)", dir, path)
		mapped[dir] = true // once per directory
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNoGoFileOver600Lines: every Go file, tests included, stays at most 600 lines (docs/design.md
// §1: a file that grows past that is split by concern), so a reader can take in any file at once;
// scripts/internal/codestats reports the same limit.
func TestNoGoFileOver600Lines(t *testing.T) {
	const limit = 600
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			base := d.Name()
			if path != "." && (strings.HasPrefix(base, ".") || base == "testdata" || base == "node_modules") {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if n := strings.Count(string(b), "\n"); n > limit {
			t.Errorf("%s has %d lines, more than %d: split it by concern", path, n, limit)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
