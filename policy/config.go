package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
	"github.com/foxproxy/foxproxy/settings"
)

// Config is the policy section: the rules that turn findings into a
// verdict.
type Config struct {
	// Rules are tried in order; the first that matches decides. No match:
	// deliver.
	Rules []Rule `yaml:"rules"`
	// OnScanUnavailable: "tempfail" (default) answers 4xx when no scanner
	// could scan a message that would otherwise be delivered; "pass"
	// delivers it unscanned. A rule that tests `scan: unavailable` itself
	// is obeyed either way.
	OnScanUnavailable string `yaml:"on_scan_unavailable"`
	// OnInfected is what happens to infected mail that no rule about scan
	// results decided: quarantine (default), reject, tempfail or deliver.
	// Enabling a scanner must never mean delivering what it found.
	OnInfected string `yaml:"on_infected"`
}

// Rule is one policy rule.
type Rule struct {
	// Name appears in the log line and the trace header; default rule-N.
	Name string `yaml:"name"`
	// If holds the conditions, all of which must match; none: always.
	If Condition `yaml:"if"`
	// Then is the action: deliver, tag, quarantine, reject, tempfail, discard.
	Then string `yaml:"then"`
	// Reply for reject and tempfail (defaults depend on what matched).
	Reply *ReplyConfig `yaml:"reply"`
	// Headers added by tag (default: X-Foxproxy-Flag: <rule name>).
	Headers []HeaderField `yaml:"headers"`
	// SubjectPrefix is put in front of the Subject by tag, e.g. "[SPAM] ".
	SubjectPrefix string `yaml:"subject_prefix"`
	// RewriteLinks makes deliver, tag and encrypt point the message's
	// links at the click service (time-of-click protection).
	RewriteLinks bool `yaml:"rewrite_links"`
}

// Condition is the "if" of a rule. Stage conditions (StageConditions) list
// categories or the keywords listed, clean, skipped, disabled (ers, wrs) or
// clean, infected, unavailable, skipped, error (scan); any item matching is
// enough. A stage that was skipped or disabled matches only those keywords.
type Condition struct {
	ERS      settings.StringList `yaml:"ers"`
	WRS      settings.StringList `yaml:"wrs"`
	Scan     settings.StringList `yaml:"scan"`
	Client   settings.Prefixes   `yaml:"client"`
	From     settings.StringList `yaml:"from"`
	To       settings.StringList `yaml:"to"`
	Header   []HeaderMatch       `yaml:"header"`
	SizeOver settings.ByteSize   `yaml:"size_over"`
	// RcptDomain matches when any recipient's domain matches one of these
	// globs ("partner.example", "*.partner.example"). For encrypt it also
	// says which recipients' copies are encrypted.
	RcptDomain settings.StringList `yaml:"rcpt_domain"`
	// SubjectTag matches when the Subject contains this text (case does not
	// matter), e.g. "[secure]". An encrypt rule removes it before
	// encrypting.
	SubjectTag string `yaml:"subject_tag"`
	// List matches when the message's client, sender or a link is on one
	// of these local lists: approved_clients, blocked_clients,
	// approved_senders, blocked_senders, blocked_urls.
	List settings.StringList `yaml:"list"`
}

// HeaderMatch matches when a header field called Name has a value that the
// regular expression Matches finds (RE2: linear time, no backtracking).
type HeaderMatch struct {
	Name    string `yaml:"name"`
	Matches string `yaml:"matches"`

	// re is Matches as Validate compiled it, for New to use: each
	// expression is compiled once per configuration.
	re *regexp.Regexp
}

// HeaderField is a header to add.
type HeaderField struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// ReplyConfig is an SMTP reply chosen by a rule.
type ReplyConfig struct {
	Code     int    `yaml:"code"`
	Enhanced string `yaml:"enhanced"` // e.g. "5.7.1"
	// Text may use {client}, {ers.zone}, {ers.reason}, {wrs.domains},
	// {scan.threat}.
	Text string `yaml:"text"`
}

// StageCondition is a rule condition on one stage's finding, such as
// if: {ers: [spam]}: the key it is written under, the stage whose finding
// it tests, and the words it takes.
type StageCondition struct {
	// Key is the condition's key under a rule's "if".
	Key string
	// Stage is the stage whose finding the condition tests.
	Stage pipeline.StageName
	// Statuses are the statuses the stage reports.
	Statuses []pipeline.Status
	// Words are what the condition's items may be, in the order errors
	// list them: the stage's statuses and keywords, or, for a stage whose
	// categories are fixed, those categories.
	Words []string
	// AnyCategory: an item may also be any category name (a DNS list's
	// categories are configured, not fixed).
	AnyCategory bool
	// Of returns the condition's items in a rule's "if" (nil: none).
	Of func(*Condition) settings.StringList
}

// StageConditions are the stages a rule can test, one condition each. It
// is the one list that validation, the engine and `foxproxy policy test
// --finding` go by: a stage the policy can test is added here (with its
// field in Condition), and nowhere else.
var StageConditions = []StageCondition{
	{Key: "ers", Stage: reputation.ERSStage, Statuses: reputation.Statuses, Words: ReputationWords, AnyCategory: true,
		Of: func(c *Condition) settings.StringList { return c.ERS }},
	{Key: "wrs", Stage: reputation.WRSStage, Statuses: reputation.Statuses, Words: ReputationWords, AnyCategory: true,
		Of: func(c *Condition) settings.StringList { return c.WRS }},
	{Key: "scan", Stage: scan.StageName, Statuses: scan.Statuses, Words: ScanWords,
		Of: func(c *Condition) settings.StringList { return c.Scan }},
	{Key: "list", Stage: liststage.Name, Statuses: liststage.Statuses, Words: ListNames,
		Of: func(c *Condition) settings.StringList { return c.List }},
}

// Actions and stage keywords a rule may use.
var (
	Actions         = []string{string(Deliver), string(Tag), string(Quarantine), string(Reject), string(Tempfail), string(Discard), string(Encrypt)}
	ListNames       = lists.Names[:] // the categories of the lists stage's finding
	ReputationWords = statusWords(reputation.Statuses, pipeline.IncompleteWord)
	ScanWords       = statusWords(scan.Statuses)
)

// statusWords spells statuses as a condition's words.
func statusWords(st []pipeline.Status, more ...string) []string {
	w := make([]string, 0, len(st)+len(more))
	for _, s := range st {
		w = append(w, string(s))
	}
	return append(w, more...)
}

var (
	headerName   = regexp.MustCompile(`^[!-9;-~]+$`) // RFC 5322 §3.6.8 ftext
	enhancedCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)
	// CategoryName is what a category (of a DNS list's answers, and so of
	// a stage condition's items) may be spelled with.
	CategoryName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

// Validate reports what is wrong with the policy section itself, with keys
// relative to it ("rules[2].then"), and compiles the rules' header
// expressions for New. What a rule needs from other sections (a
// quarantine directory, ERS zones, a key source) is checked where the
// sections are put together, in package config.
func (c *Config) Validate(report settings.Report) {
	switch c.OnScanUnavailable {
	case "tempfail", "pass":
	default:
		report("on_scan_unavailable", "%q is not one of tempfail, pass", c.OnScanUnavailable)
	}
	switch c.OnInfected {
	case "quarantine", "reject", "tempfail", "deliver":
	default:
		report("on_infected", "%q is not one of quarantine, reject, tempfail, deliver", c.OnInfected)
	}
	names := map[string]bool{}
	for i := range c.Rules {
		c.Rules[i].validate(fmt.Sprintf("rules[%d]", i), names, report)
	}
}

func (r *Rule) validate(key string, names map[string]bool, report settings.Report) {
	if r.Name != "" {
		if names[r.Name] {
			report(key+".name", "%q is used by an earlier rule", r.Name)
		}
		names[r.Name] = true
	}
	if !contains(Actions, r.Then) {
		report(key+".then", "%q is not one of %s", r.Then, strings.Join(Actions, ", "))
	}
	checkWords := func(k string, items settings.StringList, words []string, categories bool) {
		for j, w := range items {
			if contains(words, w) || (categories && CategoryName.MatchString(w)) {
				continue
			}
			if categories {
				report(fmt.Sprintf("%s.if.%s[%d]", key, k, j), "%q is neither a category nor one of %s", w, strings.Join(words, ", "))
			} else {
				report(fmt.Sprintf("%s.if.%s[%d]", key, k, j), "%q is not one of %s", w, strings.Join(words, ", "))
			}
		}
	}
	for _, sc := range StageConditions {
		checkWords(sc.Key, sc.Of(&r.If), sc.Words, sc.AnyCategory)
	}
	if r.RewriteLinks && !(Verdict{Action: Action(r.Then)}).Delivers() {
		report(key+".rewrite_links", "only deliver, tag and encrypt deliver links to rewrite")
	}
	if strings.ContainsAny(r.If.SubjectTag, "\r\n") || len(r.If.SubjectTag) > 200 {
		report(key+".if.subject_tag", "must be one line of at most 200 characters")
	}
	for j, d := range r.If.RcptDomain {
		if strings.Contains(d, "@") {
			report(fmt.Sprintf("%s.if.rcpt_domain[%d]", key, j), "%q is an address; rcpt_domain takes domains (use to: for addresses)", d)
		}
	}
	for j, a := range append(append(append(settings.StringList{}, r.If.From...), r.If.To...), r.If.RcptDomain...) {
		// Only the glob's syntax is checked: matching "" tells nothing else.
		if _, err := filepath.Match(strings.ToLower(a), ""); err != nil {
			report(fmt.Sprintf("%s.if", key), "address pattern %d %q: %v", j, a, err)
		}
	}
	for j := range r.If.Header {
		h := &r.If.Header[j]
		hk := fmt.Sprintf("%s.if.header[%d]", key, j)
		if !headerName.MatchString(h.Name) {
			report(hk+".name", "%q is not a header field name", h.Name)
		}
		if len(h.Matches) > 1000 {
			report(hk+".matches", "regular expression longer than 1000 characters")
		} else if re, err := regexp.Compile(h.Matches); err != nil {
			report(hk+".matches", "%v", err)
		} else {
			h.re = re
		}
	}
	if r.If.SizeOver < 0 {
		report(key+".if.size_over", "must not be negative")
	}
	if r.Reply != nil {
		class := map[Action]int{Reject: 5, Tempfail: 4}[Action(r.Then)]
		switch {
		case class == 0:
			report(key+".reply", "only reject and tempfail send a reply of their own")
		case r.Reply.Code/100 != class || r.Reply.Code%100 > 99:
			report(key+".reply.code", "%d does not fit %s (use %dxx)", r.Reply.Code, r.Then, class)
		}
		if r.Reply.Enhanced != "" && (!enhancedCode.MatchString(r.Reply.Enhanced) || int(r.Reply.Enhanced[0]-'0') != r.Reply.Code/100) {
			report(key+".reply.enhanced", "%q is not an enhanced status code of class %d (RFC 3463, e.g. %d.7.1)", r.Reply.Enhanced, r.Reply.Code/100, r.Reply.Code/100)
		}
		if strings.ContainsAny(r.Reply.Text, "\r\n") || len(r.Reply.Text) > 400 {
			report(key+".reply.text", "must be one line of at most 400 characters")
		}
	}
	if (len(r.Headers) > 0 || r.SubjectPrefix != "") && r.Then != "tag" {
		report(key+".then", "headers and subject_prefix need the action tag")
	}
	for j, h := range r.Headers {
		if !headerName.MatchString(h.Name) {
			report(fmt.Sprintf("%s.headers[%d].name", key, j), "%q is not a header field name", h.Name)
		}
		if strings.ContainsAny(h.Value, "\r\n") {
			report(fmt.Sprintf("%s.headers[%d].value", key, j), "must be one line")
		}
	}
	if strings.ContainsAny(r.SubjectPrefix, "\r\n") {
		report(key+".subject_prefix", "must be one line")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseEnhancedCode parses a validated "5.7.1".
func parseEnhancedCode(s string) [3]int {
	var e [3]int
	for i, p := range strings.SplitN(s, ".", 3) {
		n, _ := strconv.Atoi(p)
		e[i] = n
	}
	return e
}
