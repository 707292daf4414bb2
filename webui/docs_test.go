package webui

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// wildcard matches a path wildcard: {id}, {sha}, {sha256}, {$}.
var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// servedRoutes are the "METHOD /path" patterns the package's handlers register (read from
// its source: http.ServeMux cannot list them), with wildcards written {}. Only the API's
// routes count: the UI's page and assets, and the catch-all that answers unknown /api/
// paths, are not part of docs/api.md.
func servedRoutes(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`mux\.Handle(?:Func)?\("((?:GET|HEAD|POST|PUT|DELETE|PATCH) (/[^"]*))"`)
	routes := map[string]bool{}
	for _, m := range sourceMatches(t, "*.go", re) {
		path := m[2]
		if strings.HasPrefix(path, "/api/") || path == "/healthz" || path == "/metrics" {
			routes[wildcard.ReplaceAllString(m[1], "{}")] = true
		}
	}
	if len(routes) < 20 {
		t.Fatalf("found %d API routes in the source: the pattern no longer matches how routes are registered", len(routes))
	}
	return routes
}

// TestAPIDocNamesEveryRoute: docs/api.md names every route the API serves as `METHOD /path`,
// and every route it names is served (a route added or renamed without its documentation
// fails here).
func TestAPIDocNamesEveryRoute(t *testing.T) {
	served := servedRoutes(t)
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`((?:GET|HEAD|POST|PUT|DELETE|PATCH) /[^`\\s?]*)").FindAllStringSubmatch(string(b), -1) {
		documented[wildcard.ReplaceAllString(m[1], "{}")] = true
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("docs/api.md does not name the route %s (as `%s`)", r, r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("docs/api.md names %s, which the API does not serve", r)
		}
	}
}

// sourceMatches returns re's submatches in the package's non-test source files named by glob:
// what the docs tests read from the code (routes, events) where nothing lists it at run time.
func sourceMatches(t *testing.T, glob string, re *regexp.Regexp) [][]string {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, re.FindAllStringSubmatch(string(b), -1)...)
	}
	return out
}
