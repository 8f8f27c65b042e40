package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// Before the queue (Postfix's smtpd_proxy_filter), a client that a rule
// refuses by its reputation is answered at RCPT, as the appliance's sender
// filter did: Postfix relays foxproxy's reply to the client, the client
// never sends DATA, and nothing reaches the downstream. An unlisted client
// is delivered. A list server that never answers delays RCPT by at most
// ers.budget, and the message goes on and is delivered.
//
// swaks sends from loopback addresses (127.0.0.3 is listed, see
// startBlockList): Postfix's before-queue smtpd passes the address on with
// XFORWARD, as TestBeforeQueueProxyFilter shows.
func TestERSBeforeQueueAnswersAtRcpt(t *testing.T) {
	rbl := startBlockList(t)
	fdns := startFaultDNS(t, rbl.Addr())
	pf := harness.StartPostfix(t, harness.PostfixOptions{BeforeQueue: true})
	const budget = 2 * time.Second
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		"deployment: before_queue",
		// A DNS timeout longer than the budget: the budget, not the
		// DNS client, ends the wait on a list that never answers.
		"dns: {servers: ["+fdns.addr+"], timeout: 10s}",
		"ers:",
		"  zones: [{zone: bl.example.test, codes: {127.0.0.2: spam, 127.0.0.4: exploit}}]",
		"  recheck_interval: 1s",
		"  budget: "+budget.String(),
		ersPolicy)

	t.Run("listed client refused at RCPT", func(t *testing.T) {
		res := harness.Send(t, harness.SendOptions{Server: pf.BeforeQueueAddr, Subject: "from an exploit source",
			Args: []string{"--local-interface", "127.0.0.3"}})
		want := "550 5.7.1 Service unavailable; client host [127.0.0.3] blocked using bl.example.test; Exploit source 127.0.0.3"
		if res.Code != 550 || !strings.Contains(res.Reply, want) {
			t.Fatalf("client saw %q, want %q\n%s", res.Reply, want, res.Output)
		}
		if !strings.Contains(res.Output, "-> RCPT TO:") || strings.Contains(res.Output, "-> DATA") {
			t.Fatalf("the refusal did not come at RCPT, or DATA was sent:\n%s", res.Output)
		}
		line := fp.waitMessages(t, 1, 10*time.Second)[0]
		if line["verdict"] != "reject" || line["rule"] != "ers-exploit" || line["answered_at"] != "RCPT" ||
			line["client"] != "127.0.0.3" || !strings.HasPrefix(line["reply"].(string), want) {
			t.Fatalf("log line: %v", line)
		}
	})

	t.Run("unlisted client delivered", func(t *testing.T) {
		res := harness.Send(t, harness.SendOptions{Server: pf.BeforeQueueAddr, Subject: "from a clean client",
			Args: []string{"--local-interface", "127.0.0.5"}})
		if res.Code != 250 {
			t.Fatalf("client saw %q\n%s", res.Reply, res.Output)
		}
		m := waitSubject(t, pf, "from a clean client")
		if !strings.Contains(m.Header().Get("X-Foxproxy"), "ers=clean") {
			t.Fatalf("trace %q", m.Header().Get("X-Foxproxy"))
		}
	})

	t.Run("black-holed list delays RCPT by at most the budget", func(t *testing.T) {
		fdns.set(blackHole)
		defer fdns.set(pass)
		// 127.0.0.6 was never looked up: no cached answer hides the fault.
		c := dialSMTP(t, pf.BeforeQueueAddr, "127.0.0.6")
		c.expect("220 ")
		c.cmd("EHLO client.example.test", "250")
		c.cmd("MAIL FROM:<"+harness.SenderAddr+">", "250")
		start := time.Now()
		c.cmd("RCPT TO:<"+harness.RcptAddr+">", "250")
		waited := time.Since(start)
		t.Logf("RCPT answered %v after it was sent (ers.budget %v)", waited.Round(time.Millisecond), budget)
		// Generous: the budget plus five seconds for a loaded machine.
		if waited > budget+5*time.Second {
			t.Fatalf("RCPT took %v, ers.budget is %v", waited, budget)
		}
		c.cmd("DATA", "354")
		c.write("Subject: while the list was silent\r\n\r\nhello\r\n.\r\n")
		c.expect("250 ")
		c.cmd("QUIT", "221")
		m := waitSubject(t, pf, "while the list was silent")
		if !strings.Contains(m.Header().Get("X-Foxproxy"), "ers=skipped") {
			t.Fatalf("trace %q", m.Header().Get("X-Foxproxy"))
		}
	})

	// The refused message never reached the downstream.
	for _, m := range pf.Delivered(harness.BoxRcpt) {
		if s := m.Header().Get("Subject"); s == "from an exploit source" {
			t.Fatalf("the listed client's message was delivered")
		}
	}
}
