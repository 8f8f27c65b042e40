package policy

import (
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/pipeline"
)

// benchRules is a realistic production rule set: a partner allowlist, the
// reputation rules of README's "Quarantine all threats" setup, a
// recipient-specific rule and two content rules (a size limit for one
// sender domain and a header regexp).
const benchRules = `
ers:
  zones: [{zone: zen.example.org, codes: {127.0.0.2: spam, 127.0.0.4: exploit, 127.0.0.10: dynamic}}]
wrs:
  zones: [{zone: dbl.example.org, codes: {127.0.1.2: spam, 127.0.1.4: phish}}]
policy:
  rules:
    - {name: partners, if: {client: [192.0.2.0/24, 198.51.100.128/25, "2001:db8::/32"]}, then: deliver}
    - {name: ers, if: {ers: [spam, exploit]}, then: quarantine}
    - {name: dynamic, if: {ers: [dynamic]}, then: tag, subject_prefix: "[DYN]"}
    - {name: wrs, if: {wrs: [phish, malware]}, then: quarantine}
    - {name: wrs-spam, if: {wrs: [spam]}, then: tag, subject_prefix: "[SPAM]"}
    - {name: careful, if: {wrs: skipped, to: ["*@finance.example.com", "ceo@example.com"]}, then: tag}
    - {name: virus, if: {scan: infected}, then: quarantine}
    - {name: big-from-bulk, if: {from: "*.bulk.example.net", size_over: 5MB}, then: tempfail}
    - {name: lottery, if: {header: [{name: Subject, matches: "(?i)(lottery|you have won|claim your prize)"}]}, then: tag}
quarantine: {dir: /tmp}
`

func benchEngine(b *testing.B, yaml string) *Engine {
	b.Helper()
	return engine(b, yaml)
}

// benchFindings are a clean message's findings with every stage on.
var benchFindings = []pipeline.Finding{
	{Stage: "ers", Status: pipeline.Clean},
	{Stage: "wrs", Status: pipeline.Clean},
	{Stage: "scan", Status: pipeline.Clean, Backend: "smart"},
}

func benchMessage() string {
	var s strings.Builder
	s.WriteString("Received: from mail.example.net (mail.example.net [198.51.100.7])\r\n" +
		"\tby mx.example.test (Postfix) with ESMTPS id 4NbQ3k1x2Zz9sT\r\n" +
		"\tfor <user@example.com>; Fri, 27 Nov 2026 14:00:00 +0000 (UTC)\r\n" +
		"From: News <news@example.net>\r\nTo: <user@example.com>\r\nSubject: Product update for November\r\n" +
		"Date: Fri, 27 Nov 2026 14:00:00 +0000\r\nMessage-ID: <bench@example.net>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for s.Len() < 10<<10 {
		s.WriteString("A line of a typical message body, about seventy characters long...\r\n")
	}
	return s.String()
}

// BenchmarkDecide is the common case: a clean 10 KB message from an
// unknown client, so every rule is tried and none matches; the header
// rule reads and parses the message's header block.
func BenchmarkDecide(b *testing.B) {
	e := benchEngine(b, benchRules)
	msg := tx("203.0.113.9", "news@example.net", []string{"user@example.com", "other@example.com"}, benchMessage())
	if v := e.Decide(msg, benchFindings); v.Action != Deliver || v.Rule != "default" {
		b.Fatalf("verdict %+v", v)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(msg, benchFindings)
	}
}

// BenchmarkDecideNoHeaderRule is the same without the header rule: only
// the envelope and the findings are looked at.
func BenchmarkDecideNoHeaderRule(b *testing.B) {
	rules := benchRules[:strings.Index(benchRules, "    - {name: lottery")] + "quarantine: {dir: /tmp}\n"
	e := benchEngine(b, rules)
	msg := tx("203.0.113.9", "news@example.net", []string{"user@example.com", "other@example.com"}, benchMessage())
	if v := e.Decide(msg, benchFindings); v.Action != Deliver || v.Rule != "default" {
		b.Fatalf("verdict %+v", v)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(msg, benchFindings)
	}
}

// BenchmarkDecideListed is a listed client: the second rule matches and
// the verdict carries its reply-free quarantine.
func BenchmarkDecideListed(b *testing.B) {
	e := benchEngine(b, benchRules)
	msg := tx("203.0.113.9", "news@example.net", []string{"user@example.com"}, benchMessage())
	findings := []pipeline.Finding{
		{Stage: "ers", Status: pipeline.Listed, Categories: []string{"spam"}, Items: []pipeline.Item{{What: "203.0.113.9", Zone: "zen.example.org", Category: "spam"}}},
		{Stage: "wrs", Status: pipeline.Clean},
		{Stage: "scan", Status: pipeline.Clean},
	}
	if v := e.Decide(msg, findings); v.Action != Quarantine || v.Rule != "ers" {
		b.Fatalf("verdict %+v", v)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(msg, findings)
	}
}
