package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeSection returns the part of README.md from the line heading to the next heading of
// level 2 or 3, failing the test if there is none.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	s = s[i+len(heading)+2:]
	if j := strings.Index(s, "\n#"); j >= 0 {
		s = s[:j]
	}
	return s
}

// nodeFlags are the flags `hydra node -h` lists.
func nodeFlags(t *testing.T) map[string]bool {
	t.Helper()
	code, out, _ := run("node", "-h")
	if code != ExitOK {
		t.Fatalf("node -h: exit %d", code)
	}
	flags := map[string]bool{}
	// A flag's usage begins on the line after its name; a test build's own flags (--cheat-rate
	// of -tags cheat) say "TEST BUILD ONLY" there, and users never see them.
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+).*\n(.*)`).FindAllStringSubmatch(out, -1) {
		if !strings.Contains(m[2], "TEST BUILD ONLY") {
			flags[m[1]] = true
		}
	}
	if len(flags) < 10 {
		t.Fatalf("node -h lists %d flags: %q", len(flags), out)
	}
	return flags
}

// TestReadmeListsEveryNodeFlag: README's table of `hydra node` flags names every flag the
// command defines, and no flag it does not (the table had lost four flags).
func TestReadmeListsEveryNodeFlag(t *testing.T) {
	flags := nodeFlags(t)
	table := readmeSection(t, "### `hydra node` flags")
	documented := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "/"), "|") // \| is a | inside a cell
		if len(cells) < 3 || !strings.Contains(cells[1], "`--") {
			continue
		}
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)").FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = true
		}
	}
	for f := range flags {
		if !documented[f] {
			t.Errorf("README.md's `hydra node` flags table lacks --%s", f)
		}
	}
	for f := range documented {
		if !flags[f] {
			t.Errorf("README.md's `hydra node` flags table lists --%s, which hydra node does not define", f)
		}
	}
}

// TestReadmeListsEveryCommand: README's table of commands has a row for every subcommand,
// and no row for a command that does not exist.
func TestReadmeListsEveryCommand(t *testing.T) {
	table := readmeSection(t, "## Commands")
	exists := map[string]bool{}
	for _, c := range commands() {
		exists[c.name] = true
		// The name whole: a row for `hydra jobs` is not one for `hydra job`.
		row := regexp.MustCompile("(\\| |, )`hydra " + regexp.QuoteMeta(c.name) + "[ `]")
		if !row.MatchString(table) {
			t.Errorf("README.md's commands table lacks hydra %s", c.name)
		}
	}
	for _, m := range regexp.MustCompile("`hydra ([a-z]+)").FindAllStringSubmatch(table, -1) {
		if !exists[m[1]] {
			t.Errorf("README.md's commands table lists hydra %s, which does not exist", m[1])
		}
	}
}

// TestDesignListsEveryCommand: docs/design.md §8's CLI line names every subcommand and no
// other, as README's table does: the map is where a newcomer learns what the CLI offers.
func TestDesignListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "- CLI (`node/cli`):")
	if i < 0 {
		t.Fatal("docs/design.md §8 has no line starting \"- CLI (`node/cli`):\"")
	}
	line := doc[i:]
	if j := strings.Index(line, ";"); j >= 0 {
		line = line[:j] // the commands come before the first ';'
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("`(?:hydra )?([a-z]+)`").FindAllStringSubmatch(line, -1) {
		listed[m[1]] = true
	}
	exists := map[string]bool{}
	for _, c := range commands() {
		exists[c.name] = true
		if !listed[c.name] {
			t.Errorf("docs/design.md §8's CLI line lacks %s", c.name)
		}
	}
	for name := range listed {
		if !exists[name] {
			t.Errorf("docs/design.md §8's CLI line lists %s, which is not a command", name)
		}
	}
}
