// Command codestats prints the figures of the code's shape, for a revision and a baseline side
// by side, so that a clean-up's effect can be measured again by anyone:
//
//   - lines of Go per package (code and tests apart; blank lines and comments count, as a reader
//     meets them),
//   - the largest functions and the files over the size limit (600 lines),
//   - the pairs the `duplicates` tool lists (when it is on PATH),
//   - the go test skips scripts/test allows: on this machine, and in CI (HYDRA_REQUIRE_ALL=1).
//
// Usage (from the repository's root):
//
//	go run ./scripts/internal/codestats [-base REV] [-rev REV] [-top N]
//
// Each revision is read from git (git archive), so uncommitted changes do not count.
package main

import (
	"bytes"
	"cmp"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

const maxFileLines = 600

func main() {
	base := flag.String("base", "7b44c35", "the baseline revision")
	rev := flag.String("rev", "HEAD", "the revision measured")
	top := flag.Int("top", 5, "how many of the largest functions to list")
	flag.Parse()
	if *top < 0 {
		fmt.Fprintln(os.Stderr, "codestats: -top: want a count ≥ 0")
		os.Exit(2)
	}
	if err := run(*base, *rev, *top); err != nil {
		fmt.Fprintln(os.Stderr, "codestats:", err)
		os.Exit(1)
	}
}

// tree is what codestats measures of one revision.
type tree struct {
	rev      string
	code     map[string]int // package directory → lines of non-test Go
	test     map[string]int // package directory → lines of test Go
	funcs    []function
	bigFiles []string
	dupPairs string // the duplicates tool's first line
}

type function struct {
	name  string // pkg.Func or pkg.(Type).Method
	where string // file:line
	lines int
}

func run(baseRev, rev string, top int) error {
	tmp, err := os.MkdirTemp("", "codestats")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var trees []*tree
	for _, r := range []string{baseRev, rev} {
		dir := filepath.Join(tmp, strings.NewReplacer("/", "_", "~", "_", "^", "_").Replace(r))
		if err := extract(r, dir); err != nil {
			return err
		}
		t, err := measure(r, dir)
		if err != nil {
			return err
		}
		trees = append(trees, t)
	}
	b, h := trees[0], trees[1]

	fmt.Printf("== lines of Go per package: %s → %s (code, tests)\n", b.rev, h.rev)
	pkgs := map[string]bool{}
	for _, t := range trees {
		for p := range t.code {
			pkgs[p] = true
		}
		for p := range t.test {
			pkgs[p] = true
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for p := range pkgs {
			if !yield(p) {
				return
			}
		}
	})
	fmt.Printf("%-28s %14s %14s\n", "package", "code", "tests")
	var sum [4]int
	for _, p := range names {
		fmt.Printf("%-28s %14s %14s\n", p, change(b.code[p], h.code[p]), change(b.test[p], h.test[p]))
		sum[0] += b.code[p]
		sum[1] += h.code[p]
		sum[2] += b.test[p]
		sum[3] += h.test[p]
	}
	fmt.Printf("%-28s %14s %14s\n", "total", change(sum[0], sum[1]), change(sum[2], sum[3]))

	for _, t := range trees {
		fmt.Printf("\n== largest functions at %s\n", t.rev)
		for _, f := range t.funcs[:min(top, len(t.funcs))] {
			fmt.Printf("%5d lines  %s  (%s)\n", f.lines, f.name, f.where)
		}
		fmt.Printf("files over %d lines: %d", maxFileLines, len(t.bigFiles))
		if len(t.bigFiles) > 0 {
			fmt.Printf(" (%s)", strings.Join(t.bigFiles, ", "))
		}
		fmt.Println()
	}

	fmt.Printf("\n== duplicates (duplicates --most 200 --seconds 300)\n")
	for _, t := range trees {
		fmt.Printf("%s: %s\n", t.rev, t.dupPairs)
	}

	fmt.Printf("\n== go test skips scripts/test allows\n")
	for _, requireAll := range []string{"1", "0"} {
		cmd := exec.Command("bash", "-c", `source scripts/internal/skips.sh && allowed_skips "$(binfmt_ready)"`)
		cmd.Env = append(os.Environ(), "HYDRA_REQUIRE_ALL="+requireAll)
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("scripts/internal/skips.sh: %w", err)
		}
		what := "on this machine (HYDRA_REQUIRE_ALL=0)"
		if requireAll == "1" {
			what = "in CI (HYDRA_REQUIRE_ALL=1)"
		}
		list := strings.Fields(string(out))
		if len(list) == 0 {
			list = []string{"none"}
		}
		fmt.Printf("%s: %s\n", what, strings.Join(list, " "))
	}
	return nil
}

func change(a, b int) string {
	if a == b {
		return fmt.Sprint(a)
	}
	return fmt.Sprintf("%d→%d", a, b)
}

// extract writes revision rev's tracked files into dir.
func extract(rev, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	archive := exec.Command("git", "archive", rev)
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		return fmt.Errorf("git archive %s: %v: %s", rev, err, stderr.String())
	}
	return untar.Wait()
}

var notOurs = regexp.MustCompile(`(^|/)(node_modules|testdata|vendor)(/|$)`)

func measure(rev, dir string) (*tree, error) {
	t := &tree{rev: rev, code: map[string]int{}, test: map[string]int{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if notOurs.MatchString(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n := bytes.Count(src, []byte("\n"))
		pkg := filepath.Dir(rel)
		if strings.HasSuffix(path, "_test.go") {
			t.test[pkg] += n
		} else {
			t.code[pkg] += n
		}
		if n > maxFileLines {
			t.bigFiles = append(t.bigFiles, fmt.Sprintf("%s %d", rel, n))
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			name := fd.Name.Name
			if fd.Recv != nil && len(fd.Recv.List) > 0 {
				name = "(" + recvType(fd.Recv.List[0].Type) + ")." + name
			}
			start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
			t.funcs = append(t.funcs, function{name: pkg + "." + name, where: fmt.Sprintf("%s:%d", rel, start.Line), lines: end.Line - start.Line + 1})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(t.funcs, func(a, b function) int { return cmp.Or(cmp.Compare(b.lines, a.lines), cmp.Compare(a.name, b.name)) })
	t.dupPairs = "duplicates not on PATH"
	if _, err := exec.LookPath("duplicates"); err == nil {
		out, err := exec.Command("duplicates", "--repo", dir, "--most", "200", "--seconds", "300").Output()
		if err != nil {
			return nil, fmt.Errorf("duplicates: %w", err)
		}
		t.dupPairs, _, _ = strings.Cut(string(out), "\n")
	}
	return t, nil
}

func recvType(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return "*" + recvType(x.X)
	case *ast.IndexExpr:
		return recvType(x.X)
	case *ast.IndexListExpr:
		return recvType(x.X)
	case *ast.Ident:
		return x.Name
	}
	return "?"
}
