package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// cliResult is one run of the foxproxy binary as a command-line tool.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runFoxproxyCLI runs the built binary with args, as an administrator would.
func runFoxproxyCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(harness.BuildFoxproxy(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("foxproxy %v: %v", args, err)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill() // by the PID this test started
		<-done
		t.Fatalf("foxproxy %v: still running after a minute", args)
	}
	r := cliResult{cmd.ProcessState.ExitCode(), out.String(), errOut.String()}
	t.Logf("foxproxy %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// clamdConfig scans with the local clamd only (conventional scan).
func clamdConfig(clamd *harness.Clamd) []string {
	return []string{
		"scan:",
		"  conventional: {url: \"tcp://" + clamd.Addr() + "\"}",
		"  timeout: 5s",
		"  dial_timeout: 1s",
	}
}

var releasedAs = regexp.MustCompile(`: released to (.*): 250 2\.0\.0 Ok: queued as (\S+)`)

// EICAR from 127.0.0.2 is quarantined through Postfix; "foxproxy quarantine
// release" re-injects it into the re-injection smtpd with the original
// envelope and client (XFORWARD), it is delivered exactly once, and the
// entry is gone: a second release fails cleanly.
func TestQuarantineReleaseThroughPostfix(t *testing.T) {
	clamd := harness.StartClamd(t)
	qdir, qcfg := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(clamdConfig(clamd), qcfg...)...)

	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Data: harness.EICARMessage(harness.SenderAddr, harness.RcptAddr),
		Args: []string{"--local-interface", "127.0.0.2"}})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	id := pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: quarantined as (\S+)\)`, 20*time.Second)[1]
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
		t.Fatalf("%d messages delivered before the release", n)
	}

	list := runFoxproxyCLI(t, "quarantine", "list", "-config", fp.ConfigPath)
	if list.code != 0 || !strings.Contains(list.stdout, id) || !strings.Contains(list.stdout, "scan=infected("+harness.EICARThreat+")") {
		t.Fatalf("list: %+v", list)
	}
	show := runFoxproxyCLI(t, "quarantine", "show", id, "-config", fp.ConfigPath)
	if show.code != 0 || !strings.Contains(show.stdout, "Subject: EICAR test attachment") ||
		!strings.Contains(show.stdout, "Client:    127.0.0.2") || !strings.Contains(show.stdout, "Queue ID:  "+res.QueueID) {
		t.Fatalf("show: %+v", show)
	}

	mark := pf.MaillogMark()
	rel := runFoxproxyCLI(t, "quarantine", "release", id, "-config", fp.ConfigPath)
	m := releasedAs.FindStringSubmatch(rel.stdout)
	if rel.code != 0 || m == nil || m[1] != "<rcpt@example.test>" {
		t.Fatalf("release: %+v", rel)
	}
	dsID := m[2]
	// The re-injection smtpd saw the original client and queue ID...
	got := pf.WaitLogSince(t, mark, dsID+`: client=\S+, orig_queue_id=(\S+), orig_client=\S+\[([0-9.]+)\]`, 10*time.Second)
	if got[1] != res.QueueID || got[2] != "127.0.0.2" {
		t.Fatalf("re-injection log: orig_queue_id=%s orig_client=%s, want %s and 127.0.0.2", got[1], got[2], res.QueueID)
	}
	// ...and the original sender.
	pf.WaitLogSince(t, mark, dsID+`: from=<sender@example\.test>`, 10*time.Second)
	msg := pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)[0]
	h := msg.Header()
	if h.Get("Return-Path") != "<sender@example.test>" || h.Get("Subject") != "EICAR test attachment" ||
		!strings.Contains(string(msg.Data), "eicar.com") {
		t.Fatalf("delivered message:\n%s", msg.Data)
	}
	if r := h.Get("X-Foxproxy-Released"); !strings.Contains(r, "id="+id) || !strings.Contains(r, "rule=virus") ||
		!strings.Contains(r, "host=foxproxy.test") {
		t.Fatalf("X-Foxproxy-Released: %q", r)
	}
	if _, err := os.Stat(filepath.Join(qdir, id+".json")); !os.IsNotExist(err) {
		t.Fatalf("entry still there after the release: %v", err)
	}
	if files, _ := os.ReadDir(qdir); len(files) != 0 {
		t.Fatalf("quarantine directory not empty: %v", files)
	}

	again := runFoxproxyCLI(t, "quarantine", "release", id, "-config", fp.ConfigPath)
	if again.code != 1 || !strings.Contains(again.stderr, id+": no such entry") {
		t.Fatalf("second release: %+v", again)
	}
	pf.WaitQueueEmpty(t, 10*time.Second)
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
	// The release did not pass through foxproxy's filter again.
	if n := len(fp.messages(t)); n != 1 {
		t.Fatalf("foxproxy logged %d messages, want the one quarantined", n)
	}
}

// The re-injection smtpd refuses one of two recipients at release: the
// other gets the message, the entry stays for the refused one only, and a
// release after the problem is gone delivers to it; each recipient gets
// the message exactly once.
func TestQuarantinePartialReleaseThroughPostfix(t *testing.T) {
	clamd := harness.StartClamd(t)
	qdir, qcfg := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(clamdConfig(clamd), qcfg...)...)

	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, To: []string{harness.RcptAddr, harness.SenderAddr},
		Data: harness.EICARMessage(harness.SenderAddr, harness.RcptAddr)})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	id := pf.WaitLog(t, res.QueueID+`: to=<.*status=sent \(250 2\.0\.0 Ok: quarantined as (\S+)\)`, 20*time.Second)[1]
	if e := readQuarantine(t, qdir, id); len(e.Rcpts) != 2 {
		t.Fatalf("entry recipients %v", e.Rcpts)
	}

	pf.SetRecipientAccess(map[string]string{harness.SenderAddr: "450 4.2.1 Mailbox busy"})
	rel := runFoxproxyCLI(t, "quarantine", "release", id, "-config", fp.ConfigPath)
	if rel.code != 1 || !strings.Contains(rel.stdout, "released to <rcpt@example.test>: 250") ||
		!strings.Contains(rel.stderr, "refused <sender@example.test>: 450 4.2.1") {
		t.Fatalf("partial release: %+v", rel)
	}
	pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)
	if e := readQuarantine(t, qdir, id); len(e.Rcpts) != 1 || e.Rcpts[0] != harness.SenderAddr {
		t.Fatalf("entry after a partial release: %v", e.Rcpts)
	}

	pf.SetRecipientAccess(map[string]string{})
	rel = runFoxproxyCLI(t, "quarantine", "release", id, "-config", fp.ConfigPath)
	if m := releasedAs.FindStringSubmatch(rel.stdout); rel.code != 0 || m == nil || m[1] != "<sender@example.test>" {
		t.Fatalf("second release: %+v", rel)
	}
	pf.WaitDelivered(t, harness.BoxSender, 1, 20*time.Second)
	pf.WaitQueueEmpty(t, 10*time.Second)
	if a, b := len(pf.Delivered(harness.BoxRcpt)), len(pf.Delivered(harness.BoxSender)); a != 1 || b != 1 {
		t.Fatalf("deliveries: rcpt %d, sender %d; want 1 each", a, b)
	}
	if _, err := os.Stat(filepath.Join(qdir, id+".json")); !os.IsNotExist(err) {
		t.Fatal("entry still there")
	}
}
