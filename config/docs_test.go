package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// The configuration reference lives in docs/ (docs/configuration.md maps
// each section of the file to its page). These tests keep it honest: every
// key of the embedded default is documented, and no link in README.md or
// docs/ points at a page or heading that is not there.

// TestDefaultKeysDocumented fails for each key path of config/default.yaml
// (e.g. `timeouts.data`, `wrs.safebrowsing.api_key`) that no page in docs/
// writes out in full as a code span. The rule is strict on purpose: a
// table row `data` under a "timeouts" heading does not count, so a reader
// searching the docs for the dotted path, as it appears in error messages,
// always finds it.
func TestDefaultKeysDocumented(t *testing.T) {
	keys, err := defaultKeyPaths("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pages := docsPages(t)
	for _, key := range undocumentedKeys(t, keys, pages) {
		t.Errorf("config/default.yaml key %s is documented nowhere in docs/*.md (write it as `%s`)", key, key)
	}
}

// TestDocLinksResolve fails for each relative link in README.md and
// docs/*.md whose file does not exist, whose #anchor is no heading of the
// page it names, or which leaves the repository.
func TestDocLinksResolve(t *testing.T) {
	files := append([]string{filepath.Join("..", "README.md")}, docsPages(t)...)
	for _, problem := range brokenLinks(t, "..", files) {
		t.Error(problem)
	}
}

// TestDocCheckersCatchProblems shows that the two checks above can fail:
// on a small made-up repository they name the undocumented key and each
// broken link.
func TestDocCheckersCatchProblems(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	yml := write("default.yaml", "listen: x\ntimeouts:\n  data: 1m\n  stages: 2m\nwrs:\n  safebrowsing:\n    api_key: \"\"\n  zones: []\nencryption:\n  openpgp:\n    resolve: {}\n")
	keys, err := defaultKeyPaths(yml)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"encryption.openpgp.resolve", "listen", "timeouts.data", "timeouts.stages", "wrs.safebrowsing.api_key", "wrs.zones"}
	if fmt.Sprint(keys) != fmt.Sprint(wantKeys) {
		t.Fatalf("key paths = %v, want %v", keys, wantKeys)
	}

	page := write("docs/a.md", "# A\n\n## Two words\n\n`listen`, `timeouts.data`, `wrs.zones`, `encryption.openpgp.resolve` and\nthe key `stages` of timeouts.\n\n"+
		"```yaml\nwrs: {safebrowsing: {api_key: `wrs.safebrowsing.api_key`}}\n```\n\n"+
		"[ok](#two-words) [ok](b.md#b-c) [ok](../README.md) [ok](https://example.org/x.md#nowhere)\n"+
		"[missing anchor](#two) [missing file](c.md) [missing anchor elsewhere](b.md#nowhere) [outside](../../etc/passwd) `[in code](nowhere.md)`\n")
	write("docs/b.md", "# B: c\n\n## B (c)\n")
	write("README.md", "# R\n")

	if got, want := undocumentedKeys(t, keys, []string{page}), []string{"timeouts.stages", "wrs.safebrowsing.api_key"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("undocumented keys = %v, want %v (a bare `stages` and a key inside a code block do not count)", got, want)
	}
	got := brokenLinks(t, root, []string{page})
	want := []string{"#two", "c.md", "b.md#nowhere", "../../etc/passwd"}
	if len(got) != len(want) {
		t.Fatalf("broken links = %q, want one each for %q", got, want)
	}
	for i, w := range want {
		if !strings.Contains(got[i], "("+w+")") {
			t.Errorf("problem %d = %q, want it to name (%s)", i, got[i], w)
		}
	}
}

// docsPages is docs/*.md, sorted; there must be some.
func docsPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in docs/ (%v)", err)
	}
	sort.Strings(pages)
	return pages
}

// defaultKeyPaths returns the dotted path of every key in the YAML file
// whose value is not a section (a mapping with keys of its own), sorted. An
// empty mapping such as `resolve: {}` is a value, so its key counts.
func defaultKeyPaths(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a mapping at the top", file)
	}
	var keys []string
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			path := prefix + m.Content[i].Value
			if v := m.Content[i+1]; v.Kind == yaml.MappingNode && len(v.Content) > 0 {
				walk(path+".", v)
				continue
			}
			keys = append(keys, path)
		}
	}
	walk("", doc.Content[0])
	sort.Strings(keys)
	return keys, nil
}

// undocumentedKeys returns the keys that are no code span of any page.
func undocumentedKeys(t *testing.T, keys, pages []string) []string {
	t.Helper()
	spans := map[string]bool{}
	for _, page := range pages {
		for _, m := range codeSpan.FindAllStringSubmatch(prose(t, page), -1) {
			spans[m[1]] = true
		}
	}
	var missing []string
	for _, k := range keys {
		if !spans[k] {
			missing = append(missing, k)
		}
	}
	return missing
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	// mdLink is an inline link [text](target), the only kind the docs
	// use; its text may run over a line end.
	mdLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// brokenLinks checks the relative links of files, which lie inside the
// repository root, and returns one problem per broken link, naming the
// file, line and target.
func brokenLinks(t *testing.T, root string, files []string) []string {
	t.Helper()
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]map[string]bool{} // cleaned path → its heading anchors
	anchorsOf := func(p string) map[string]bool {
		if a, ok := anchors[p]; ok {
			return a
		}
		a := headingAnchors(t, p)
		anchors[p] = a
		return a
	}
	var problems []string
	for _, file := range files {
		// A link inside a code span is text; blanking the spans but not
		// their line ends keeps the line numbers.
		text := codeSpan.ReplaceAllStringFunc(prose(t, file), func(span string) string {
			return strings.Repeat("\n", strings.Count(span, "\n"))
		})
		for _, m := range mdLink.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if scheme.MatchString(target) {
				continue // not a file of the repository
			}
			path, frag, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			}
			abs, err := filepath.Abs(dest)
			if err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("%s:%d: link (%s)", file, 1+strings.Count(text[:m[0]], "\n"), target)
			switch {
			case abs != absRoot && !strings.HasPrefix(abs, absRoot+string(filepath.Separator)):
				problems = append(problems, where+" leaves the repository")
			case !exists(abs):
				problems = append(problems, where+": no such file")
			case frag != "" && strings.HasSuffix(abs, ".md") && !anchorsOf(abs)[frag]:
				problems = append(problems, fmt.Sprintf("%s: no heading with anchor #%s in %s", where, frag, dest))
			}
		}
	}
	return problems
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// headingAnchors returns the anchors a Markdown renderer such as GitHub's
// gives the headings of a page: lower case, punctuation dropped, spaces
// turned into hyphens, and "-1", "-2" added to repeats.
func headingAnchors(t *testing.T, page string) map[string]bool {
	t.Helper()
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, line := range strings.Split(prose(t, page), "\n") {
		text, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if !strings.HasPrefix(line, "#") || !ok {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(text)) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

// prose returns a Markdown file with the lines of fenced code blocks (and
// their fences) blanked, so that what is left is prose and headings, each on
// its own line number.
func prose(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	fenced := false
	for i, line := range lines {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			lines[i] = ""
		} else if fenced {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}
