package compute

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// compute is pure (its package doc, docs/design.md §1): of Hydra it imports only its own
// subpackages and the leaf wire, nothing outside the standard library (no bbolt: payloads go
// to a ResultStore), and of package os it reads only the environment (no files).
func TestPurity_ImportsAndFiles(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/hydra-compute/hydra/"
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		osName := ""
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			switch {
			case path == mod+"wire", strings.HasPrefix(path, mod+"compute/"):
			case strings.HasPrefix(path, mod):
				t.Errorf("%s imports %s: compute may import only its subpackages and wire", name, path)
			case strings.Contains(first, "."):
				t.Errorf("%s imports %s: compute imports nothing outside the standard library", name, path)
			case path == "os":
				osName = "os"
				if im.Name != nil {
					osName = im.Name.Name
				}
			}
		}
		if osName == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == osName && sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv" {
				t.Errorf("%s uses os.%s: compute reads the environment only (files belong to the node)", name, sel.Sel.Name)
			}
			return true
		})
	}
	if checked < 10 {
		t.Fatalf("checked %d files: run from the package directory", checked)
	}
}
