package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/spool"
)

func engine(t testing.TB, doc string) *Engine {
	t.Helper()
	e, err := New(parse(t, doc), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// parse reads the policy section of a configuration file, with the
// defaults of config/default.yaml, and validates it. Other sections are
// ignored: what rules need from them is package config's to check.
func parse(t testing.TB, doc string) Config {
	t.Helper()
	file := struct {
		Policy Config `yaml:"policy"`
	}{Config{OnScanUnavailable: "tempfail", OnInfected: "quarantine"}}
	if err := yaml.Unmarshal([]byte(doc), &file); err != nil {
		t.Fatal(err)
	}
	var problems []string
	file.Policy.Validate(func(key, format string, args ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, args...))
	})
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
	return file.Policy
}

const rules = `
ers:
  zones: [{zone: bl.example.test, codes: {127.0.0.2: spam, 127.0.0.4: exploit}}]
wrs:
  zones: [{zone: uribl.example.test}]
policy:
  rules:
    - {name: partner, if: {client: [192.0.2.0/24]}, then: deliver}
    - {name: ers-block, if: {ers: [spam, exploit]}, then: reject}
    - {name: phish, if: {wrs: [phish]}, then: quarantine}
    - {name: wrs-down, if: {wrs: skipped, to: "*@careful.example"}, then: tag, subject_prefix: "[unchecked] "}
    - {name: virus, if: {scan: infected}, then: quarantine}
    - {name: big-from-x, if: {from: "*.x.example", size_over: 10}, then: tempfail}
    - {name: subj, if: {header: [{name: subject, matches: "(?i)viagra"}]}, then: discard}
quarantine: {dir: /tmp}
`

var (
	ersSpam  = pipeline.Finding{Stage: "ers", Status: pipeline.Listed, Categories: []string{"spam"}, Reason: "see http://bl/?1", Items: []pipeline.Item{{What: "198.51.100.1", Zone: "bl.example.test", Category: "spam"}}}
	ersClean = pipeline.Finding{Stage: "ers", Status: pipeline.Clean}
	ersOff   = pipeline.Finding{Stage: "ers", Status: pipeline.Disabled}
	wrsPhish = pipeline.Finding{Stage: "wrs", Status: pipeline.Listed, Categories: []string{"phish"}}
	wrsSkip  = pipeline.Finding{Stage: "wrs", Status: pipeline.Skipped}
	scanVir  = pipeline.Finding{Stage: "scan", Status: pipeline.Infected, Detail: "Eicar-Test-Signature"}
	scanOK   = pipeline.Finding{Stage: "scan", Status: pipeline.Clean}
	scanGone = pipeline.Finding{Stage: "scan", Status: pipeline.Unavailable}
)

func tx(client, from string, to []string, msg string) *pipeline.Transaction {
	return &pipeline.Transaction{Client: netip.MustParseAddr(client), From: from, Rcpts: to, Message: spool.FromBytes([]byte(msg))}
}

func TestRules(t *testing.T) {
	e := engine(t, rules)
	plain := "Subject: hello\r\n\r\nbody\r\n"
	cases := []struct {
		name     string
		tx       *pipeline.Transaction
		findings []pipeline.Finding
		action   Action
		rule     string
	}{
		{"nothing found", tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, plain), []pipeline.Finding{ersClean, scanOK}, Deliver, "default"},
		{"first match wins", tx("192.0.2.9", "a@b.example", []string{"c@d.example"}, plain), []pipeline.Finding{ersSpam}, Deliver, "partner"},
		{"ers category", tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, plain), []pipeline.Finding{ersSpam, scanVir}, Reject, "ers-block"},
		{"disabled ers never matches a category", tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, plain), []pipeline.Finding{ersOff, scanVir}, Quarantine, "virus"},
		{"wrs category", tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, plain), []pipeline.Finding{ersClean, wrsPhish}, Quarantine, "phish"},
		{"skipped wrs: the category no longer matches", tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, plain), []pipeline.Finding{wrsSkip}, Deliver, "default"},
		{"skipped wrs tested explicitly", tx("198.51.100.1", "a@b.example", []string{"x@d.example", "y@careful.example"}, plain), []pipeline.Finding{wrsSkip}, Tag, "wrs-down"},
		{"size and sender glob", tx("198.51.100.1", "a@mx.x.example", []string{"c@d.example"}, plain), nil, Tempfail, "big-from-x"},
		{"size under the limit", tx("198.51.100.1", "a@mx.x.example", []string{"c@d.example"}, "S: x\r\n\r\n"), nil, Deliver, "default"},
		{"header regexp", tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, "Subject: cheap VIAGRA\r\n\r\nx\r\n"), nil, Discard, "subj"},
		{"no finding for a stage", tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, plain), []pipeline.Finding{}, Deliver, "default"},
	}
	for _, tc := range cases {
		v := e.Decide(tc.tx, tc.findings)
		if v.Action != tc.action || v.Rule != tc.rule {
			t.Errorf("%s: got %s by %s, want %s by %s", tc.name, v.Action, v.Rule, tc.action, tc.rule)
		}
	}
}

func TestDefaultReplies(t *testing.T) {
	e := engine(t, rules)
	v := e.Decide(tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, ""), []pipeline.Finding{ersSpam})
	want := "Service unavailable; client host [198.51.100.1] blocked using bl.example.test; see http://bl/?1"
	if v.Reply == nil || v.Reply.Code != 550 || v.Reply.Enhanced != [3]int{5, 7, 1} || v.Reply.Text != want {
		t.Fatalf("reply %+v", v.Reply)
	}
	e = engine(t, `
policy:
  rules:
    - if: {scan: infected}
      then: reject
      reply: {code: 554, enhanced: 5.7.0, text: "virus {scan.threat} from {client}"}
`)
	v = e.Decide(tx("198.51.100.1", "", nil, ""), []pipeline.Finding{scanVir})
	if v.Rule != "rule-1" || v.Reply.Code != 554 || v.Reply.Enhanced != [3]int{5, 7, 0} || v.Reply.Text != "virus Eicar-Test-Signature from 198.51.100.1" {
		t.Fatalf("custom reply %+v %+v", v, v.Reply)
	}
}

// Nothing is delivered unscanned unless the configuration says so.
func TestScanUnavailableGuard(t *testing.T) {
	e := engine(t, rules)
	v := e.Decide(tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, ""), []pipeline.Finding{ersClean, scanGone})
	if v.Action != Tempfail || v.Rule != "on_scan_unavailable" || v.Reply.Code != 451 {
		t.Fatalf("unscanned mail: %+v", v)
	}
	// A reject needs no scan.
	if v := e.Decide(tx("198.51.100.1", "a@b.example", nil, ""), []pipeline.Finding{ersSpam, scanGone}); v.Action != Reject {
		t.Fatalf("listed and unscanned: %+v", v)
	}
	pass := engine(t, "policy: {on_scan_unavailable: pass}\n")
	if v := pass.Decide(tx("198.51.100.1", "", nil, ""), []pipeline.Finding{scanGone}); v.Action != Deliver {
		t.Fatalf("on_scan_unavailable: pass: %+v", v)
	}
	explicit := engine(t, "policy:\n  rules:\n    - {if: {scan: unavailable}, then: tag}\n")
	if v := explicit.Decide(tx("198.51.100.1", "", nil, ""), []pipeline.Finding{scanGone}); v.Action != Tag || v.Headers[0].Name != "X-Foxproxy-Flag" {
		t.Fatalf("explicit rule: %+v", v)
	}
}

func TestAddressMatches(t *testing.T) {
	cases := []struct {
		pattern, addr string
		want          bool
	}{
		{"example.com", "a@example.com", true},
		{"example.com", "a@sub.example.com", false},
		{"*.example.com", "a@sub.example.com", true},
		{"*@example.com", "A@Example.COM", true},
		{"postmaster@*", "postmaster@x.example", true},
		{"<>", "", true},
		{"example.com", "", false},
	}
	for _, tc := range cases {
		if got := addressMatches([]string{strings.ToLower(tc.pattern)}, tc.addr); got != tc.want {
			t.Errorf("%q ~ %q = %v", tc.pattern, tc.addr, got)
		}
	}
}

func TestActionsAgreeWithValidation(t *testing.T) {
	mine := []string{string(Deliver), string(Tag), string(Quarantine), string(Reject), string(Tempfail), string(Discard), string(Encrypt)}
	if !slices.Equal(mine, Actions) {
		t.Fatalf("policy actions %v, validation accepts %v", mine, Actions)
	}
}

// Turning a scanner on never delivers what it finds, even without a rule
// about scan results, and even when an earlier rule says deliver.
func TestOnInfectedGuard(t *testing.T) {
	e := engine(t, "policy:\n  rules:\n    - {name: partner, if: {client: [192.0.2.0/24]}, then: deliver}\n")
	for _, client := range []string{"192.0.2.1", "198.51.100.1"} {
		v := e.Decide(tx(client, "a@b.example", nil, ""), []pipeline.Finding{scanVir})
		if v.Action != Quarantine || v.Rule != "on_infected" {
			t.Errorf("infected from %s: %+v", client, v)
		}
	}
	rej := engine(t, "policy: {on_infected: reject}\n")
	v := rej.Decide(tx("198.51.100.1", "", nil, ""), []pipeline.Finding{scanVir})
	if v.Action != Reject || v.Reply.Code != 550 || v.Reply.Text != "Error: message refused: malware found (Eicar-Test-Signature)" {
		t.Fatalf("on_infected reject: %+v %+v", v, v.Reply)
	}
	// A rule that looks at the scan itself is obeyed.
	tag := engine(t, "policy:\n  rules:\n    - {if: {scan: infected}, then: tag}\n")
	if v := tag.Decide(tx("198.51.100.1", "", nil, ""), []pipeline.Finding{scanVir}); v.Action != Tag {
		t.Fatalf("explicit scan rule: %+v", v)
	}
}

// A header expression is compiled once per configuration: by Validate,
// and New uses that compiled expression instead of compiling it again.
func TestHeaderExpressionCompiledOnce(t *testing.T) {
	cfg := parse(t, "policy:\n  rules:\n    - {if: {header: [{name: subject, matches: \"(?i)viagra\"}]}, then: discard}\n")
	validated := cfg.Rules[0].If.Header[0].re
	if validated == nil {
		t.Fatal("Validate did not compile the header expression")
	}
	e, err := New(cfg, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.rules[0].cond.header[0].re; got != validated {
		t.Fatal("New compiled the header expression again")
	}
}
