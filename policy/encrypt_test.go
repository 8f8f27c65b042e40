package policy

import (
	"slices"
	"testing"

	"github.com/foxproxy/foxproxy/pipeline"
)

// encryptRules is a policy with encrypt and rewrite_links rules.
const encryptRules = `
policy:
  rules:
    - {name: blocked, if: {list: [blocked_clients, blocked_senders]}, then: reject}
    - {name: tagged, if: {subject_tag: "[Secure]"}, then: encrypt}
    - {name: partner, if: {rcpt_domain: [partner.example, "*.partner.example"]}, then: encrypt, rewrite_links: true}
    - {name: links, then: deliver, rewrite_links: true}
`

// Encrypt selects the recipients its conditions matched, so a message to a
// partner and a colleague is encrypted for the partner only.
func TestEncryptSelectsRecipients(t *testing.T) {
	e := engine(t, encryptRules)
	plain := "Subject: hello\r\n\r\nbody\r\n"
	cases := []struct {
		name   string
		tx     *pipeline.Transaction
		action Action
		rule   string
		rcpts  []string
		tag    string
		links  bool
	}{
		{"partner domain only", tx("198.51.100.1", "a@b.example", []string{"x@partner.example", "y@local.example", "z@mx.partner.example"}, plain),
			Encrypt, "partner", []string{"x@partner.example", "z@mx.partner.example"}, "", true},
		{"domain case ignored", tx("198.51.100.1", "a@b.example", []string{"X@Partner.Example"}, plain),
			Encrypt, "partner", []string{"X@Partner.Example"}, "", true},
		{"subject tag: everyone, tag to strip", tx("198.51.100.1", "a@b.example", []string{"x@partner.example", "y@local.example"}, "Subject: [SECURE] contract\r\n\r\nbody\r\n"),
			Encrypt, "tagged", []string{"x@partner.example", "y@local.example"}, "[secure]", false},
		{"tag in the body is not a subject tag", tx("198.51.100.1", "a@b.example", []string{"y@local.example"}, "Subject: hi\r\n\r\n[secure]\r\n"),
			Deliver, "links", nil, "", true},
		{"no partner: deliver with links rewritten", tx("198.51.100.1", "a@b.example", []string{"y@local.example"}, plain),
			Deliver, "links", nil, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := e.Decide(c.tx, nil)
			if v.Action != c.action || v.Rule != c.rule {
				t.Fatalf("verdict %s by %s, want %s by %s", v.Action, v.Rule, c.action, c.rule)
			}
			if !slices.Equal(v.EncryptRcpts, c.rcpts) || v.SubjectTag != c.tag || v.RewriteLinks != c.links {
				t.Errorf("encrypt for %v tag %q links %v; want %v %q %v", v.EncryptRcpts, v.SubjectTag, v.RewriteLinks, c.rcpts, c.tag, c.links)
			}
		})
	}
}

// The list condition matches the categories the local-lists stage reports.
func TestListCondition(t *testing.T) {
	e := engine(t, encryptRules)
	plain := "Subject: hello\r\n\r\nbody\r\n"
	m := tx("198.51.100.1", "a@b.example", []string{"y@local.example"}, plain)
	blocked := pipeline.Finding{Stage: "lists", Status: pipeline.Listed, Categories: []string{"blocked_senders"}}
	approved := pipeline.Finding{Stage: "lists", Status: pipeline.Listed, Categories: []string{"approved_clients"}}
	if v := e.Decide(m, []pipeline.Finding{blocked}); v.Action != Reject || v.Rule != "blocked" {
		t.Errorf("blocked sender: %s by %s", v.Action, v.Rule)
	}
	if v := e.Decide(m, []pipeline.Finding{approved}); v.Rule == "blocked" {
		t.Errorf("approved client matched a blocked-list rule")
	}
	if v := e.Decide(m, []pipeline.Finding{{Stage: "lists", Status: pipeline.Clean}}); v.Rule == "blocked" {
		t.Errorf("clean lists finding matched")
	}
}

// Encrypt delivers, so the scan guard applies to it like to deliver.
func TestEncryptIsGuarded(t *testing.T) {
	e := engine(t, encryptRules)
	m := tx("198.51.100.1", "a@b.example", []string{"x@partner.example"}, "Subject: hi\r\n\r\nb\r\n")
	if v := e.Decide(m, []pipeline.Finding{scanVir}); v.Action != Quarantine {
		t.Errorf("infected encrypt: %s by %s", v.Action, v.Rule)
	}
	if v := e.Decide(m, []pipeline.Finding{scanGone}); v.Action != Tempfail {
		t.Errorf("unscanned encrypt: %s by %s", v.Action, v.Rule)
	}
}

// A message with more links than WRS reads can be told apart: its links
// were judged only in part.
func TestWRSIncompleteKeyword(t *testing.T) {
	e := engine(t, "wrs: {zones: [{zone: uribl.example.test}]}\npolicy:\n  rules:\n"+
		"    - {name: partly, if: {wrs: [incomplete]}, then: tag, subject_prefix: \"[links not all checked]\"}\n")
	m := tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, "Subject: hi\r\n\r\nb\r\n")
	for _, c := range []struct {
		f    pipeline.Finding
		want Action
	}{
		{pipeline.Finding{Stage: "wrs", Status: pipeline.Clean, Incomplete: true}, Tag},
		{pipeline.Finding{Stage: "wrs", Status: pipeline.Listed, Categories: []string{"spam"}, Incomplete: true}, Tag},
		{pipeline.Finding{Stage: "wrs", Status: pipeline.Clean}, Deliver},
	} {
		if v := e.Decide(m, []pipeline.Finding{c.f}); v.Action != c.want {
			t.Errorf("%+v: %s by %s, want %s", c.f, v.Action, v.Rule, c.want)
		}
	}
}
