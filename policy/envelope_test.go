package policy

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/spool"
)

const envelopeRules = `
ers:
  zones: [{zone: bl.example.test, codes: {127.0.0.2: spam, 127.0.0.4: exploit}}]
wrs:
  zones: [{zone: uribl.example.test}]
policy:
  rules:
    - {name: partner, if: {client: [192.0.2.0/24]}, then: deliver}
    - {name: newsletter, if: {from: "*@news.example", header: [{name: List-Id, matches: "."}]}, then: deliver}
    - {name: exploit-virus, if: {ers: [exploit], scan: infected}, then: discard}
    - {name: ers-spam, if: {ers: [spam]}, then: reject}
    - {name: blocked, if: {list: [blocked_clients, blocked_senders]}, then: tempfail, reply: {code: 421, text: "go away {client}"}}
    - {name: ers-exploit, if: {ers: [exploit]}, then: reject}
`

var (
	ersExploit   = pipeline.Finding{Stage: "ers", Status: pipeline.Listed, Categories: []string{"exploit"}, Items: []pipeline.Item{{What: "198.51.100.1", Zone: "bl.example.test", Category: "exploit"}}}
	ersSkipped   = pipeline.Finding{Stage: "ers", Status: pipeline.Skipped, Detail: "failed bl.example.test: timeout"}
	listsClean   = pipeline.Finding{Stage: "lists", Status: pipeline.Clean}
	listsBlocked = pipeline.Finding{Stage: "lists", Status: pipeline.Listed, Categories: []string{"blocked_clients"}}
)

// envTx is a transaction as known before DATA: no content.
func envTx(client, from string) *pipeline.Transaction {
	return &pipeline.Transaction{Client: netip.MustParseAddr(client), From: from, Rcpts: []string{"c@d.example"}}
}

// The rules are tried in order over what is known before DATA; a rule that
// needs the content stops the decision when it could still match, and is
// passed over when its envelope part already fails.
func TestDecideBeforeData(t *testing.T) {
	e := engine(t, envelopeRules)
	cases := []struct {
		name     string
		tx       *pipeline.Transaction
		findings []pipeline.Finding
		decided  bool
		action   Action
		rule     string
		reply    string
	}{
		{"listed client: refused with the after-DATA text", envTx("198.51.100.1", "a@b.example"), []pipeline.Finding{listsClean, ersSpam}, true, Reject, "ers-spam",
			"550 5.7.1 Service unavailable; client host [198.51.100.1] blocked using bl.example.test; see http://bl/?1"},
		{"clean client: deliver by default", envTx("198.51.100.1", "a@b.example"), []pipeline.Finding{listsClean, ersClean}, true, Deliver, "default", ""},
		{"an earlier envelope rule that delivers wins", envTx("192.0.2.7", "a@b.example"), []pipeline.Finding{listsClean, ersSpam}, true, Deliver, "partner", ""},
		{"an earlier content rule that could deliver: after DATA", envTx("198.51.100.1", "x@news.example"), []pipeline.Finding{listsClean, ersSpam}, false, "", "", ""},
		{"an earlier content rule whose envelope part fails is passed over", envTx("198.51.100.1", "x@other.example"), []pipeline.Finding{listsClean, ersSpam}, true, Reject, "ers-spam", ""},
		{"a mixed rule whose envelope part holds: after DATA", envTx("198.51.100.1", "a@b.example"), []pipeline.Finding{listsClean, ersExploit}, false, "", "", ""},
		{"skipped lookup: after DATA", envTx("198.51.100.1", "a@b.example"), []pipeline.Finding{listsClean, ersSkipped}, false, "", "", ""},
		{"disabled lookup: after DATA", envTx("198.51.100.1", "a@b.example"), []pipeline.Finding{listsClean, ersOff}, false, "", "", ""},
		{"no ERS finding: after DATA", envTx("198.51.100.1", "a@b.example"), []pipeline.Finding{listsClean}, false, "", "", ""},
		{"blocked client", envTx("203.0.113.5", "a@b.example"), []pipeline.Finding{listsBlocked, ersClean}, true, Tempfail, "blocked", "421 4.7.1 go away 203.0.113.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, ok := e.DecideBeforeData(c.tx, c.findings)
			if ok != c.decided {
				t.Fatalf("decided %v (%+v), want %v", ok, v, c.decided)
			}
			if !ok {
				return
			}
			if v.Action != c.action || v.Rule != c.rule {
				t.Fatalf("got %s/%s, want %s/%s", v.Action, v.Rule, c.action, c.rule)
			}
			if c.reply != "" && replyString(v.Reply) != c.reply {
				t.Fatalf("reply %q, want %q", replyString(v.Reply), c.reply)
			}
			// Whatever the content turns out to be, the rules give the
			// same verdict after DATA.
			for _, content := range []struct {
				msg      string
				findings []pipeline.Finding
			}{
				{"Subject: hi\r\n\r\nx\r\n", []pipeline.Finding{wrsPhish, scanVir}},
				{"List-Id: <l.news.example>\r\n\r\nx\r\n", []pipeline.Finding{wrsSkip, scanOK}},
			} {
				full := *c.tx
				full.Message = spool.FromBytes([]byte(content.msg))
				after := e.Decide(&full, append(append([]pipeline.Finding(nil), c.findings...), content.findings...))
				if v.Action != Reject && v.Action != Tempfail {
					continue // not acted on before DATA
				}
				if after.Action != v.Action || after.Rule != v.Rule || replyString(after.Reply) != replyString(v.Reply) {
					t.Fatalf("after DATA: %s/%s %q, before DATA: %s/%s %q", after.Action, after.Rule, replyString(after.Reply),
						v.Action, v.Rule, replyString(v.Reply))
				}
			}
		})
	}
}

func replyString(r *Reply) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

// Conditions only the content, or the complete recipient list, can decide.
func TestDecideBeforeDataContentConditions(t *testing.T) {
	cases := []struct {
		name, rule string
		decided    bool
	}{
		{"wrs", `{if: {wrs: [phish]}, then: deliver}`, false},
		{"scan", `{if: {scan: clean}, then: deliver}`, false},
		{"header", `{if: {header: [{name: X, matches: "."}]}, then: deliver}`, false},
		{"subject tag", `{if: {subject_tag: "[x]"}, then: deliver}`, false},
		{"size", `{if: {size_over: 1KB}, then: deliver}`, false},
		{"recipient", `{if: {to: ["c@d.example"]}, then: deliver}`, false},
		{"recipient domain", `{if: {rcpt_domain: [d.example]}, then: deliver}`, false},
		{"blocked_urls without a client or sender hit", `{if: {list: [blocked_urls, approved_senders]}, then: deliver}`, false},
		{"client and sender lists without a hit", `{if: {list: [approved_clients, approved_senders]}, then: deliver}`, true},
		{"blocked_urls with a client hit", `{if: {list: [blocked_clients, blocked_urls]}, then: deliver}`, true},
		{"reply naming the threat", `{if: {ers: [spam]}, then: reject, reply: {code: 550, text: "{scan.threat}"}}`, false},
		{"reply naming the client", `{if: {ers: [spam]}, then: reject, reply: {code: 550, text: "{client} {ers.zone}"}}`, true},
		{"ers keyword skipped on an answered lookup", `{if: {ers: [skipped]}, then: deliver}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := engine(t, "ers: {zones: [{zone: bl.example.test, codes: {127.0.0.2: spam}}]}\n"+
				"wrs: {zones: [{zone: uribl.example.test}]}\n"+

				"policy:\n  rules:\n    - "+c.rule+"\n    - {name: last, if: {ers: [spam]}, then: reject}\n")
			blocked := pipeline.Finding{Stage: "lists", Status: pipeline.Listed, Categories: []string{"blocked_clients"}}
			v, ok := e.DecideBeforeData(envTx("198.51.100.1", "a@b.example"), []pipeline.Finding{blocked, ersSpam})
			if ok != c.decided {
				t.Fatalf("decided %v (%s/%s), want %v", ok, v.Action, v.Rule, c.decided)
			}
		})
	}
}
