// Package arch holds foxproxy's architecture test: every package sits in a
// layer, and imports run only downwards. docs/ARCHITECTURE.md explains the
// layers; this table is where a new package is placed.
package arch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/foxproxy/foxproxy"

// layers places every package of the module. A package may import only
// packages of a lower layer.
var layers = map[string]int{
	// 0: leaves: value types, time, the shape of a health report, message
	// content, a message's links.
	"settings": 0,
	"clock":    0,
	"health":   0,
	"spool":    0,
	"links":    0,
	// The benchmarks' test messages.
	"internal/benchmsg": 0,
	// 1: data that knows only the leaves: stored entries, the local
	// lists, test helpers.
	"quarantine":        1,
	"lists":             1,
	"clock/clocktest":   1,
	"internal/testutil": 1,
	"internal/pgtest":   1,
	// PostgreSQL custody: a quarantine.Store in a database.
	"pgstore": 2,
	// 2: the seam between the SMTP side and the checks; list bundles.
	"pipeline": 2,
	"update":   2,
	// 3: the stages, and the services around delivery; the message log.
	"msglog":          3,
	"reputation":      3,
	"scan":            3,
	"lists/liststage": 3,
	"clicktime":       3,
	"encryption":      3,
	// 4: the policy: findings in, one verdict out.
	"policy": 4,
	// 5-7: putting mail into the downstream; releasing what was kept;
	// rescanning held mail.
	"delivery": 5,
	"release":  6,
	"rescan":   7,
	// 8: the SMTP server; the web console (pages and API over custody
	// and the message log).
	"proxy":   8,
	"console": 8,
	// 9-10: operations.
	"admin":   9,
	"metrics": 10,
	// 11: the configuration file, composing every package's settings.
	"config": 11,
	// 12: the command that wires it all.
	"cmd/foxproxy": 12,
	// Tests and tools, outside the product.
	"integration/harness": 13,
	"integration":         14,
	"bench":               14,
	"internal/arch":       14,
}

// pkg is what `go list -json` says of a package, as far as the test needs.
type pkg struct {
	ImportPath string
	Imports    []string
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }
}

// check returns every problem with pkgs: a package that failed to load (an
// import cycle among them), a package not placed in layers, an import that
// does not run downwards. Each names the import or the package.
func check(pkgs []pkg, layers map[string]int) []string {
	var problems []string
	for _, p := range pkgs {
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if p.Error != nil {
			problems = append(problems, fmt.Sprintf("%s: %s", name, p.Error.Err))
		}
		for _, e := range p.DepsErrors {
			problems = append(problems, fmt.Sprintf("%s: %s", name, e.Err))
		}
		from, placed := layers[name]
		if !placed {
			problems = append(problems, fmt.Sprintf("%s: not placed in a layer (add it to layers in internal/arch)", name))
			continue
		}
		for _, imp := range p.Imports {
			to, ours := strings.CutPrefix(imp, module+"/")
			if !ours {
				continue
			}
			if l, placed := layers[to]; placed && l >= from {
				problems = append(problems, fmt.Sprintf("%s (layer %d) imports %s (layer %d): imports must run downwards", name, from, to, l))
			}
		}
	}
	slices.Sort(problems)
	return slices.Compact(problems)
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < len(layers)/2 {
		t.Fatalf("go list found %d packages; is the test run from internal/arch?", len(pkgs))
	}
	return pkgs
}

// TestImportsRunDownwards is the architecture: no domain package imports
// config, the pipeline imports no stage, nothing imports what sits above
// it, and no import cycle; each problem names the import.
func TestImportsRunDownwards(t *testing.T) {
	for _, p := range check(listPackages(t), layers) {
		t.Error(p)
	}
}

// TestCheckNamesTheOffendingImport: the checker catches each kind of
// problem the architecture test is for.
func TestCheckNamesTheOffendingImport(t *testing.T) {
	m := func(s string) string { return module + "/" + s }
	cycle := &struct{ Err string }{"import cycle not allowed: a imports b imports a"}
	pkgs := []pkg{
		{ImportPath: m("policy"), Imports: []string{m("config"), m("pipeline"), "fmt"}},
		{ImportPath: m("pipeline"), Imports: []string{m("reputation"), m("links")}},
		{ImportPath: m("proxy"), Imports: []string{m("delivery")}},
		{ImportPath: m("newpkg")},
		{ImportPath: m("a"), Error: cycle},
	}
	l := map[string]int{"links": 0, "pipeline": 1, "reputation": 2, "policy": 3, "delivery": 4, "proxy": 7, "config": 10, "a": 0}
	got := strings.Join(check(pkgs, l), "\n")
	for _, want := range []string{
		"policy (layer 3) imports config (layer 10)",
		"pipeline (layer 1) imports reputation (layer 2)",
		"newpkg: not placed in a layer",
		"a: import cycle not allowed",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "proxy (layer 7) imports delivery") || strings.Contains(got, "links") {
		t.Errorf("a downward import reported:\n%s", got)
	}
}
