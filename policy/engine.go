package policy

import (
	"bufio"
	"fmt"
	"io"
	"net/textproto"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
	"github.com/foxproxy/foxproxy/settings"
)

// Engine evaluates the configured rules: in order, first match wins, no
// match delivers. Verdicts are per message: a rule's "to" condition matches
// when any recipient matches (see README, "Policy").
//
// One safety net sits after the rules: a message that would be delivered
// although no scanner could scan it (scan unavailable, or error: an
// answer that could not be used) is deferred (4xx) instead, unless
// on_scan_unavailable is "pass" or the deciding rule tested the scan
// itself. Nothing is delivered unscanned by accident.
type Engine struct {
	rules          []rule
	passUnscanned  bool
	onInfected     Action
	maxHeaderBytes int64
	needHeader     bool
}

type rule struct {
	name          string
	cond          condition
	action        Action
	reply         *ReplyConfig
	headers       []Header
	subjectPrefix string
	rewriteLinks  bool
}

type condition struct {
	stages     []stageTest // in StageConditions order
	client     settings.Prefixes
	from, to   []string
	rcptDomain []string
	subjectTag string
	header     []headerMatch
	sizeOver   int64
}

// stageTest is a rule's condition on one stage's finding: any of words
// matches (see stageMatches).
type stageTest struct {
	stage pipeline.StageName
	words []string
}

// tests reports whether the condition tests stage's finding.
func (cond *condition) tests(stage pipeline.StageName) bool {
	for _, st := range cond.stages {
		if st.stage == stage {
			return true
		}
	}
	return false
}

type headerMatch struct {
	name string
	re   *regexp.Regexp
}

var _ Decider = (*Engine)(nil)

// New builds the engine for a policy configuration that Validate accepted.
// The header expressions Validate compiled are used as they are; only a
// configuration that never went through Validate has them compiled here.
func New(cfg Config, maxHeaderBytes int64) (*Engine, error) {
	e := &Engine{passUnscanned: cfg.OnScanUnavailable == "pass", onInfected: Action(cfg.OnInfected), maxHeaderBytes: maxHeaderBytes}
	if e.onInfected == "" {
		e.onInfected = Quarantine
	}
	for i, rc := range cfg.Rules {
		r := rule{
			name:          rc.Name,
			action:        Action(rc.Then),
			reply:         rc.Reply,
			subjectPrefix: rc.SubjectPrefix,
			rewriteLinks:  rc.RewriteLinks,
			cond: condition{
				client: nonEmptyPrefixes(rc.If.Client), sizeOver: int64(rc.If.SizeOver),
				from: lower(rc.If.From), to: lower(rc.If.To), rcptDomain: lower(rc.If.RcptDomain),
				subjectTag: strings.ToLower(rc.If.SubjectTag),
			},
		}
		for _, sc := range StageConditions {
			if words := nonEmpty(sc.Of(&rc.If)); words != nil {
				r.cond.stages = append(r.cond.stages, stageTest{stage: sc.Stage, words: words})
			}
		}
		if r.cond.subjectTag != "" {
			e.needHeader = true
		}
		if r.name == "" {
			r.name = fmt.Sprintf("rule-%d", i+1)
		}
		for _, h := range rc.If.Header {
			re := h.re
			if re == nil {
				var err error
				if re, err = regexp.Compile(h.Matches); err != nil {
					return nil, fmt.Errorf("policy.rules[%d].if.header: %w", i, err)
				}
			}
			r.cond.header = append(r.cond.header, headerMatch{name: textproto.CanonicalMIMEHeaderKey(h.Name), re: re})
			e.needHeader = true
		}
		for _, h := range rc.Headers {
			r.headers = append(r.headers, Header{Name: h.Name, Value: h.Value})
		}
		if r.action == Tag && len(r.headers) == 0 {
			r.headers = []Header{{Name: "X-Foxproxy-Flag", Value: r.name}}
		}
		e.rules = append(e.rules, r)
	}
	return e, nil
}

func nonEmptyPrefixes(p settings.Prefixes) settings.Prefixes {
	if len(p) == 0 {
		return nil
	}
	return p
}

// nonEmpty treats an empty list ("ers: []") as no condition.
func nonEmpty(l settings.StringList) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

func lower(l settings.StringList) []string {
	if len(l) == 0 {
		return nil // no condition
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.ToLower(s)
	}
	return out
}

// Decide implements Decider.
func (e *Engine) Decide(tx *pipeline.Transaction, findings []pipeline.Finding) Verdict {
	ctx := &evalContext{tx: tx, findings: findings, e: e}
	r, _ := e.first(func(r *rule) tri { return known(r.cond.matches(ctx)) })
	if r == nil {
		return e.guard(ctx, defaultVerdict, false)
	}
	return e.guard(ctx, r.verdict(ctx), r.cond.tests(scan.StageName))
}

// defaultVerdict is the verdict when no rule matches.
var defaultVerdict = Verdict{Action: Deliver, Rule: RuleDefault, Reason: ReasonDefault}

// first walks the rules in order, first match wins: it returns the first
// rule whose match is yes (nil: none matched), or decided false when a
// rule's match is unknown before one matched.
func (e *Engine) first(match func(*rule) tri) (r *rule, decided bool) {
	for i := range e.rules {
		switch match(&e.rules[i]) {
		case yes:
			return &e.rules[i], true
		case unknown:
			return nil, false
		}
	}
	return nil, true
}

// guard keeps a delivering verdict from delivering what the scan could not
// clear, unless the deciding rule looked at the scan result itself:
// infected mail gets on_infected, unscanned mail is deferred (unless
// on_scan_unavailable is pass).
func (e *Engine) guard(ctx *evalContext, v Verdict, ruleTestedScan bool) Verdict {
	if ruleTestedScan || !v.Delivers() {
		return v
	}
	f, ok := ctx.finding(scan.StageName)
	if !ok {
		return v
	}
	switch {
	case f.Status == pipeline.Infected && e.onInfected != Deliver:
		g := Verdict{Action: e.onInfected, Rule: RuleOnInfected, Reason: ReasonInfected}
		if g.Action == Reject || g.Action == Tempfail {
			r := rule{action: g.Action, cond: condition{stages: []stageTest{{stage: scan.StageName, words: []string{string(pipeline.Infected)}}}}}
			g.Reply = r.buildReply(ctx)
		}
		return g
	case (f.Status == pipeline.Unavailable || f.Status == pipeline.Error) && !e.passUnscanned:
		// Error: the scanner answered something unusable (a malformed
		// reply, an error of its own). The message is as unscanned as
		// when no scanner answered at all.
		return Verdict{Action: Tempfail, Rule: RuleOnScanUnavailable, Reason: ReasonUnscanned, Reply: &Reply{Code: 451, Enhanced: [3]int{4, 7, 1},
			Text: "Error: scan service temporarily unavailable, try again later"}}
	}
	return v
}

type evalContext struct {
	tx       *pipeline.Transaction
	findings []pipeline.Finding
	e        *Engine
	header   textproto.MIMEHeader
	read     bool
}

func (c *evalContext) finding(stage pipeline.StageName) (pipeline.Finding, bool) {
	for _, f := range c.findings {
		if f.Stage == stage {
			return f, true
		}
	}
	return pipeline.Finding{}, false
}

func (c *evalContext) messageHeader() textproto.MIMEHeader {
	if !c.read {
		c.read = true
		if c.tx.Message != nil {
			r := textproto.NewReader(bufio.NewReader(io.LimitReader(c.tx.Message.Open(), c.e.maxHeaderBytes)))
			c.header, _ = r.ReadMIMEHeader() // a broken header still yields what was read
		}
	}
	return c.header
}

func (cond *condition) matches(c *evalContext) bool {
	for _, st := range cond.stages {
		if !stageMatches(c, st.stage, st.words) {
			return false
		}
	}
	if cond.client != nil && (!c.tx.Client.IsValid() || !cond.client.Contains(c.tx.Client)) {
		return false
	}
	if cond.from != nil && !addressMatches(cond.from, c.tx.From) {
		return false
	}
	if (cond.to != nil || cond.rcptDomain != nil) && len(cond.selectRcpts(c.tx.Rcpts)) == 0 {
		return false
	}
	if cond.subjectTag != "" && !subjectHasTag(c.messageHeader().Get("Subject"), cond.subjectTag) {
		return false
	}
	if cond.sizeOver > 0 && (c.tx.Message == nil || c.tx.Message.Size() <= cond.sizeOver) {
		return false
	}
	for _, h := range cond.header {
		found := false
		for _, v := range c.messageHeader()[h.name] {
			if h.re.MatchString(v) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// selectRcpts returns the recipients that the rule's recipient conditions
// (to, rcpt_domain; both when both are given) match.
func (cond *condition) selectRcpts(rcpts []string) []string {
	var out []string
	for _, r := range rcpts {
		if cond.to != nil && !addressMatches(cond.to, r) {
			continue
		}
		if cond.rcptDomain != nil && !domainMatches(cond.rcptDomain, r) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// subjectHasTag matches the tag anywhere in the Subject, ignoring case. The
// Subject is compared as written (an encoded-word hides a tag, as it does
// from every other filter that looks for one).
func subjectHasTag(subject, lowerTag string) bool {
	return strings.Contains(strings.ToLower(subject), lowerTag)
}

func domainMatches(patterns []string, addr string) bool {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return false
	}
	domain := strings.ToLower(addr[i+1:])
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, domain); ok {
			return true
		}
	}
	return false
}

// stageMatches: any listed word matches. A status's name matches that
// status; "incomplete" matches a finding that reached a limit; any other
// word is a category, which matches only a Listed finding. So a skipped or
// disabled stage matches only those keywords ("the Web Reputation
// condition no longer matches" while its service is down), and the lists
// stage's condition, whose words are the names of the lists, matches the
// lists its finding lists.
func stageMatches(c *evalContext, stage pipeline.StageName, words []string) bool {
	f, ok := c.finding(stage)
	if !ok {
		return false
	}
	for _, w := range words {
		switch {
		case pipeline.KnownStatus(w):
			if string(f.Status) == w {
				return true
			}
		case w == pipeline.IncompleteWord:
			if f.Incomplete {
				return true
			}
		default:
			if f.Status == pipeline.Listed && f.Has(w) {
				return true
			}
		}
	}
	return false
}

// addressMatches: a pattern with "@" is a glob on the whole address
// ("*@example.com", "postmaster@*"); without, a glob on the domain
// ("example.com", "*.example.com"); "<>" is the null sender.
func addressMatches(patterns []string, addr string) bool {
	addr = strings.ToLower(addr)
	domain := addr
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		domain = addr[i+1:]
	}
	for _, p := range patterns {
		switch {
		case p == "<>":
			if addr == "" {
				return true
			}
		case strings.Contains(p, "@"):
			if ok, _ := filepath.Match(p, addr); ok && addr != "" {
				return true
			}
		default:
			if ok, _ := filepath.Match(p, domain); ok && addr != "" {
				return true
			}
		}
	}
	return false
}

func (r *rule) verdict(c *evalContext) Verdict {
	v := Verdict{Action: r.action, Rule: r.name, RewriteLinks: r.rewriteLinks}
	switch r.action {
	case Tag:
		v.Headers = r.headers
		v.SubjectPrefix = r.subjectPrefix
	case Encrypt:
		v.EncryptRcpts = c.tx.Rcpts
		if r.cond.to != nil || r.cond.rcptDomain != nil {
			v.EncryptRcpts = r.cond.selectRcpts(c.tx.Rcpts)
		}
		if r.cond.subjectTag != "" {
			v.SubjectTag = r.cond.subjectTag
		}
	case Reject, Tempfail:
		v.Reply = r.buildReply(c)
	}
	return v
}

func (r *rule) buildReply(c *evalContext) *Reply {
	rep := &Reply{Code: 550, Enhanced: [3]int{5, 7, 1}}
	if r.action == Tempfail {
		rep.Code, rep.Enhanced = 451, [3]int{4, 7, 1}
	}
	vars := c.replyVars()
	if r.reply != nil {
		rep.Code = r.reply.Code
		if r.reply.Enhanced != "" {
			rep.Enhanced = parseEnhancedCode(r.reply.Enhanced)
		} else {
			rep.Enhanced[0] = rep.Code / 100
		}
		if r.reply.Text != "" {
			rep.Text = vars.Replace(r.reply.Text)
			return rep
		}
	}
	rep.Text = r.defaultText(c)
	return rep
}

// defaultText explains the rejection by what the rule matched, the way
// Postfix's reject_rbl_client does for DNS lists.
func (r *rule) defaultText(c *evalContext) string {
	if r.action == Tempfail {
		return "Error: message deferred by policy, try again later"
	}
	if r.cond.tests(reputation.ERSStage) {
		if f, ok := c.finding(reputation.ERSStage); ok && f.Status == pipeline.Listed {
			t := fmt.Sprintf("Service unavailable; client host [%s] blocked using %s", c.tx.Client, zoneOf(f))
			if f.Reason != "" {
				t += "; " + f.Reason
			}
			return t
		}
	}
	if r.cond.tests(reputation.WRSStage) {
		if f, ok := c.finding(reputation.WRSStage); ok && f.Status == pipeline.Listed {
			return fmt.Sprintf("Error: message refused: it links to %s, listed by %s", whatOf(f), zoneOf(f))
		}
	}
	if r.cond.tests(scan.StageName) {
		if f, ok := c.finding(scan.StageName); ok && f.Status == pipeline.Infected {
			return fmt.Sprintf("Error: message refused: malware found (%s)", f.Detail)
		}
	}
	return "Error: message refused by policy"
}

func zoneOf(f pipeline.Finding) string {
	if len(f.Items) > 0 {
		return f.Items[0].Zone
	}
	return "a block list"
}

func whatOf(f pipeline.Finding) string {
	var w []string
	for i, it := range f.Items {
		if i == 3 {
			w = append(w, "...")
			break
		}
		w = append(w, it.What)
	}
	return strings.Join(w, ", ")
}

func (c *evalContext) replyVars() *strings.Replacer {
	var ersZone, ersReason, wrsDomains, threat string
	if f, ok := c.finding(reputation.ERSStage); ok && f.Status == pipeline.Listed {
		ersZone, ersReason = zoneOf(f), f.Reason
	}
	if f, ok := c.finding(reputation.WRSStage); ok && f.Status == pipeline.Listed {
		wrsDomains = whatOf(f)
	}
	if f, ok := c.finding(scan.StageName); ok && f.Status == pipeline.Infected {
		threat = f.Detail
	}
	return strings.NewReplacer("{client}", c.tx.Client.String(), "{ers.zone}", ersZone, "{ers.reason}", ersReason,
		"{wrs.domains}", wrsDomains, "{scan.threat}", threat)
}
