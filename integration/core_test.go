package integration

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// Mail sent to Postfix goes through foxproxy and arrives intact, with the
// trace header, and the re-injection smtpd logs the original client and
// queue ID that XFORWARD carried through foxproxy.
func TestPostfixDeliversThroughFoxproxy(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr)

	body := "first line\r\n.line starting with a dot\r\n..two dots\r\nXFORWARD ADDR=6.6.6.6\r\nlast line"
	// Send from 127.0.0.2, so the original client differs from foxproxy's own
	// address (127.0.0.1) in every log.
	res := harness.Send(t, harness.SendOptions{
		Server: pf.InboundAddr, Subject: "through foxproxy", Body: body,
		Args: []string{"--local-interface", "127.0.0.2"},
	})
	if res.Code != 250 || res.QueueID == "" {
		t.Fatalf("inbound smtpd: %s\n%s", res.Reply, res.Output)
	}
	msgs := pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)
	m := msgs[0]
	if n := headerCount(m, "X-Foxproxy"); n != 1 {
		t.Fatalf("%d X-Foxproxy headers:\n%s", n, m.Data)
	}
	trace := m.Header().Get("X-Foxproxy")
	for _, want := range []string{"foxproxy/", "host=foxproxy.test", "verdict=deliver"} {
		if !strings.Contains(trace, want) {
			t.Errorf("X-Foxproxy %q lacks %q", trace, want)
		}
	}
	// Maildir files have LF line ends.
	if got, want := strings.TrimRight(string(m.Body()), "\n"), strings.ReplaceAll(body, "\r\n", "\n"); got != want {
		t.Fatalf("body changed:\n got %q\nwant %q", got, want)
	}
	if m.Header().Get("Subject") != "through foxproxy" {
		t.Fatalf("subject: %q", m.Header().Get("Subject"))
	}

	// foxproxy's log line: the client is the original one (XFORWARD ADDR),
	// the queue IDs are both Postfix's.
	line := fp.waitMessages(t, 1, 10*time.Second)[0]
	if line["client"] != "127.0.0.2" || line["client_source"] != "xforward" || line["queue_id"] != res.QueueID {
		t.Fatalf("foxproxy log line: %v (inbound queue ID %s)", line, res.QueueID)
	}
	dsID, _ := line["downstream_queue_id"].(string)
	if dsID == "" {
		t.Fatalf("no downstream queue ID in %v", line)
	}
	// Postfix's re-injection smtpd logs the original client and queue ID.
	got := pf.WaitLog(t, dsID+`: client=\S+, orig_queue_id=(\S+), orig_client=\S+\[([0-9.]+)\]`, 10*time.Second)
	if got[1] != res.QueueID || got[2] != "127.0.0.2" {
		t.Fatalf("re-injection log: orig_queue_id=%s orig_client=%s, want %s and 127.0.0.2", got[1], got[2], res.QueueID)
	}
	// The inbound side logged foxproxy's answer, which is the downstream's.
	pf.WaitLog(t, res.QueueID+`: .*status=sent \(250 2.0.0 Ok: queued as `+dsID+`\)`, 10*time.Second)
}

// With foxproxy down, Postfix keeps the mail deferred; once foxproxy is up
// and the queue is flushed, it is delivered exactly once.
func TestPostfixDefersWhileFoxproxyIsDown(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		// Retry only when told to, so the test sees the deferred state.
		QueueRunDelay: "1h", MinBackoff: "1h", MaxBackoff: "1h",
	})
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: "while down"})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	q := pf.WaitDeferred(t, 1, 20*time.Second)
	if r := q[0].Recipients[0].DelayReason; !strings.Contains(r, "Connection refused") {
		t.Fatalf("deferred for %q", r)
	}
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
		t.Fatalf("%d messages delivered while foxproxy was down", n)
	}

	startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr)
	pf.Flush()
	pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)
	pf.WaitQueueEmpty(t, 10*time.Second)
	pf.Flush()
	time.Sleep(500 * time.Millisecond)
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
		t.Fatalf("delivered %d times, want exactly once", n)
	}
}

// A recipient the re-injection smtpd refuses makes foxproxy refuse it too,
// and the inbound Postfix bounces the message to its sender.
func TestDownstreamRejectBounces(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{RejectRecipients: []string{"nobody@example.test"}})
	startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr)
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, To: []string{"nobody@example.test"}, Subject: "to nobody"})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	got := pf.WaitLog(t, res.QueueID+`: to=<nobody@example.test>.*dsn=(5\.1\.1), status=bounced \((.*)\)`, 20*time.Second)
	if !strings.Contains(got[2], "User unknown") {
		t.Fatalf("bounce reason %q is not the downstream's", got[2])
	}
	bounces := pf.WaitDelivered(t, harness.BoxSender, 1, 20*time.Second)
	if !strings.Contains(string(bounces[0].Data), "Undelivered Mail Returned to Sender") {
		t.Fatalf("sender did not get a bounce:\n%s", bounces[0].Data)
	}
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
		t.Fatalf("%d messages delivered for a refused recipient", n)
	}
}

// Before-queue use (smtpd_proxy_filter): the client talks through Postfix's
// smtpd to foxproxy in real time, so it sees foxproxy's answers directly.
func TestBeforeQueueProxyFilter(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{BeforeQueue: true, RejectRecipients: []string{"nobody@example.test"}})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr)

	res := harness.Send(t, harness.SendOptions{Server: pf.BeforeQueueAddr, Subject: "before queue",
		Args: []string{"--local-interface", "127.0.0.2"}})
	if res.Code != 250 {
		t.Fatalf("before-queue smtpd: %s\n%s", res.Reply, res.Output)
	}
	m := pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)[0]
	if headerCount(m, "X-Foxproxy") != 1 {
		t.Fatalf("no trace header:\n%s", m.Data)
	}
	line := fp.waitMessages(t, 1, 10*time.Second)[0]
	if line["client"] != "127.0.0.2" {
		t.Fatalf("before-queue XFORWARD did not reach foxproxy: %v", line)
	}

	res = harness.Send(t, harness.SendOptions{Server: pf.BeforeQueueAddr, To: []string{"nobody@example.test"}})
	if res.Code != 550 || !strings.Contains(res.Reply, "User unknown") {
		t.Fatalf("refused recipient: client saw %q", res.Reply)
	}
}

// SIGHUP with a bad file keeps the running configuration; a good file is
// applied; SIGTERM stops foxproxy cleanly.
func TestReloadAndStop(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr)

	good, err := os.ReadFile(fp.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(fp.ConfigPath, append(append([]byte(nil), good...), "timeouts:\n  comand: 5s\n"...), 0o644)
	mark := fp.LogMark()
	fp.Signal(syscall.SIGHUP)
	got := fp.WaitLogSince(t, mark, `new configuration refused; keeping the running one.*foxproxy.yaml:\d+: timeouts.comand: unknown key`, 10*time.Second)
	if len(got) == 0 {
		t.Fatal("refusal not logged")
	}
	if res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr}); res.Code != 250 {
		t.Fatalf("send after refused reload: %s", res.Reply)
	}
	pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)

	os.WriteFile(fp.ConfigPath, append(append([]byte(nil), good...), "log:\n  level: debug\n"...), 0o644)
	mark = fp.LogMark()
	fp.Signal(syscall.SIGHUP)
	fp.WaitLogSince(t, mark, `SIGHUP: configuration reloaded`, 10*time.Second)

	fp.Signal(syscall.SIGTERM)
	if code := fp.WaitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if !regexp.MustCompile(`foxproxy stopped`).MatchString(fp.Log()) {
		t.Fatalf("no clean stop in the log:\n%s", tail(fp.Log(), 10))
	}
}
