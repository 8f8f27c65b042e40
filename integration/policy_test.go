package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// One configuration with rules for every stage, through real Postfix and
// the real services: each kind of message ends where its rule says, the
// log line and trace header name that rule, and "foxproxy policy test" on
// the same message predicts the same verdict.
//
// The test is three tables. A stage joins (WRS, when it lands) with one
// entry in stages (its daemons and configuration lines), its rules in
// rules, and one row per kind of message in messages.
func TestPolicyAllStagesThroughPostfix(t *testing.T) {
	stages := []struct {
		name  string
		start func(t *testing.T) []string // starts the daemons, returns the stage's configuration
	}{
		{"ers", func(t *testing.T) []string { return ersConfig(startBlockList(t)) }},
		{"scan", func(t *testing.T) []string { return clamdConfig(harness.StartClamd(t)) }},
	}
	// The policy, first match wins.
	rules := []string{
		`{name: ers-exploit, if: {ers: [exploit]}, then: reject}`,
		`{name: virus, if: {scan: infected}, then: quarantine}`,
		`{name: ers-spam, if: {ers: [spam]}, then: tag, subject_prefix: "[SPAM]"}`,
		`{name: lottery, if: {header: [{name: Subject, matches: "(?i)lottery"}]}, then: discard}`,
		`{name: hold, if: {header: [{name: Subject, matches: "^hold "}]}, then: tempfail}`,
	}
	// The test list (startBlockList) lists 127.0.0.2 as spam and 127.0.0.3
	// as an exploit source; 127.0.0.5 is clean.
	messages := []struct {
		subject string
		client  string
		eicar   bool
		action  string // the verdict
		rule    string // the rule that decides
	}{
		{"clean mail from a clean client", "127.0.0.5", false, "deliver", "default"},
		{"clean mail from an exploit source", "127.0.0.3", false, "reject", "ers-exploit"},
		{"clean mail from a spammer", "127.0.0.2", false, "tag", "ers-spam"},
		{"malware from a clean client", "127.0.0.5", true, "quarantine", "virus"},
		{"malware from a spammer", "127.0.0.2", true, "quarantine", "virus"},
		{"malware from an exploit source", "127.0.0.3", true, "reject", "ers-exploit"},
		{"you won the LOTTERY", "127.0.0.5", false, "discard", "lottery"},
		{"hold this one back", "127.0.0.5", false, "tempfail", "hold"},
	}

	var cfg []string
	for _, s := range stages {
		cfg = append(cfg, s.start(t)...)
	}
	qdir := filepath.Join(t.TempDir(), "quarantine")
	cfg = append(cfg, "quarantine: {dir: "+qdir+"}", "policy:", "  rules:")
	for _, r := range rules {
		cfg = append(cfg, "    - "+r)
	}
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, cfg...)
	msgDir := t.TempDir()

	for i, m := range messages {
		data := policyMessage(m.subject, m.eicar)
		res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Data: data, Args: []string{"--local-interface", m.client}})
		if res.Code != 250 {
			t.Fatalf("%s: inbound smtpd: %s", m.subject, res.Reply)
		}
		status := res.QueueID + `: to=<rcpt@example\.test>.*status=(sent|bounced|deferred) \((.*)\)$`
		got := pf.WaitLog(t, status, 20*time.Second)
		outcome, reply := got[1], got[2]
		switch m.action {
		case "deliver", "tag":
			subject := m.subject
			if m.action == "tag" {
				subject = "[SPAM] " + subject
			}
			if outcome != "sent" || !strings.Contains(reply, "Ok: queued as") {
				t.Errorf("%s: %s (%s), want delivered", m.subject, outcome, reply)
				break
			}
			trace := waitSubject(t, pf, subject).Header().Get("X-Foxproxy")
			for _, s := range stages {
				if !strings.Contains(trace, s.name+"=") {
					t.Errorf("%s: trace %q lacks the %s finding", m.subject, trace, s.name)
				}
			}
			if !strings.Contains(trace, "rule="+m.rule) {
				t.Errorf("%s: trace %q, want rule=%s", m.subject, trace, m.rule)
			}
		case "reject":
			if outcome != "bounced" || !strings.Contains(reply, "550 5.7.1") {
				t.Errorf("%s: %s (%s), want bounced with 550 5.7.1", m.subject, outcome, reply)
			}
		case "quarantine":
			id, ok := strings.CutPrefix(reply, "250 2.0.0 Ok: quarantined as ")
			if outcome != "sent" || !ok {
				t.Errorf("%s: %s (%s), want quarantined", m.subject, outcome, reply)
				break
			}
			if e := readQuarantine(t, qdir, id); e.Rule != m.rule {
				t.Errorf("%s: quarantined by rule %q, want %q", m.subject, e.Rule, m.rule)
			}
		case "discard":
			if outcome != "sent" || reply != "250 2.0.0 Ok: discarded" {
				t.Errorf("%s: %s (%s), want discarded", m.subject, outcome, reply)
			}
		case "tempfail":
			if outcome != "deferred" || !strings.Contains(reply, "451 4.7.1") {
				t.Errorf("%s: %s (%s), want deferred with 451 4.7.1", m.subject, outcome, reply)
			}
		}
		line := fp.waitMessage(t, res.QueueID)
		if line["verdict"] != m.action || line["rule"] != m.rule {
			t.Errorf("%s: log line verdict %v, rule %v; want %s, %s", m.subject, line["verdict"], line["rule"], m.action, m.rule)
		}

		// The dry run on the same message and envelope comes to the same end.
		file := filepath.Join(msgDir, fmt.Sprintf("%d.eml", i))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dry := runFoxproxyCLI(t, "policy", "test", "-config", fp.ConfigPath, "--client", m.client,
			"--from", harness.SenderAddr, "--to", harness.RcptAddr, file)
		want := fmt.Sprintf("verdict   %s, rule %q", m.action, m.rule)
		if m.rule == "default" {
			want = fmt.Sprintf("verdict   %s, no rule matched", m.action)
		}
		if dry.code != 0 || !strings.Contains(dry.stdout, want) {
			t.Errorf("%s: policy test does not say %q: %+v", m.subject, want, dry)
		}
	}

	// Nothing else was delivered: exactly the deliver and tag rows.
	want := 0
	for _, m := range messages {
		if m.action == "deliver" || m.action == "tag" {
			want++
		}
	}
	if n := len(pf.Delivered(harness.BoxRcpt)); n != want {
		t.Fatalf("%d messages delivered, want %d", n, want)
	}
}

// policyMessage is a message with the given subject: plain text, or with
// the EICAR test file attached.
func policyMessage(subject string, eicar bool) []byte {
	if eicar {
		return bytes.Replace(harness.EICARMessage(harness.SenderAddr, harness.RcptAddr),
			[]byte("Subject: EICAR test attachment"), []byte("Subject: "+subject), 1)
	}
	return []byte("From: <" + harness.SenderAddr + ">\r\nTo: <" + harness.RcptAddr + ">\r\nSubject: " + subject +
		"\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\nA message for the policy test.\r\n")
}

// waitMessage waits for foxproxy's log line of the message with the
// upstream queue ID qid.
func (f *foxproxy) waitMessage(t *testing.T, qid string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range f.messages(t) {
			if l["queue_id"] == qid {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no foxproxy log line for queue ID %s; log tail:\n%s", qid, tail(f.Log(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
