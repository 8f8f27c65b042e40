package integration

// Crash safety: foxproxy killed with SIGKILL (no chance to clean up) in the
// middle of a message leaves no partial message delivered and no half
// quarantine entry visible; Postfix, which never heard a 250, retries, and
// the message arrives exactly once after foxproxy is started again.

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// kill ends foxproxy with SIGKILL and waits for it to be gone.
func (f *foxproxy) kill(t *testing.T) {
	t.Helper()
	f.Signal(syscall.SIGKILL)
	if code := f.WaitExit(t, 10*time.Second); code != -1 {
		t.Fatalf("foxproxy exited with %d, want killed by SIGKILL", code)
	}
}

// restart starts a killed foxproxy again on the same configuration.
func (f *foxproxy) restart(t *testing.T) {
	t.Helper()
	mark := f.LogMark()
	f.Restart()
	f.WaitLogSince(t, mark, `"foxproxy started"`, 20*time.Second)
	harness.WaitPort(t, f.Addr, 5*time.Second)
}

// quarantineEntries lists a quarantine directory the way `foxproxy
// quarantine list` does and returns the number of entries it reports.
func quarantineEntries(t *testing.T, cfg string) (int, string) {
	t.Helper()
	r := runFoxproxyCLI(t, "quarantine", "list", "--json", "-config", cfg)
	if r.code != 0 {
		t.Fatalf("foxproxy quarantine list: exit %d: %s", r.code, r.stderr)
	}
	out := strings.TrimSpace(r.stdout)
	if out == "" || out == "[]" || out == "null" {
		return 0, out
	}
	return strings.Count(out, `"id":`), out
}

func TestCrashSIGKILLMidDATA(t *testing.T) {
	// Postfix hands the message over, foxproxy's scan stalls on a scanner
	// that never answers (the downstream transaction is open: MAIL and
	// RCPT were mirrored), and foxproxy is killed.
	t.Run("stalled stage through Postfix", func(t *testing.T) {
		clamd := harness.StartClamd(t)
		relay := startFaultTCP(t, clamd.Addr())
		qdir := filepath.Join(t.TempDir(), "quarantine")
		pf := harness.StartPostfix(t, harness.PostfixOptions{})
		fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
			"scan: {conventional: {url: \"tcp://"+relay.addr+"\"}, timeout: 60s}",
			"timeouts: {stages: 3m}",
			"quarantine: {dir: "+qdir+"}",
			"policy: {rules: [{name: virus, if: {scan: infected}, then: quarantine}]}")

		relay.set(blackHole)
		before := relay.accepted.Load()
		mark := pf.MaillogMark()
		qid := send(t, pf, cleanClient, "killed mid-DATA", "The whole message, or nothing.\r\n")
		waitUntil(t, "foxproxy to be scanning the message", 20*time.Second, func() bool { return relay.accepted.Load() > before })
		time.Sleep(200 * time.Millisecond)
		fp.kill(t)

		o := postfixOutcome(t, pf, mark, qid, 20*time.Second)
		if o.status != "deferred" || !strings.Contains(o.reply, "lost connection") {
			t.Fatalf("after the kill: %s (%s), want deferred for the lost connection", o.status, o.reply)
		}
		// The re-injection smtpd lost its client before DATA: nothing queued.
		pf.WaitLogSince(t, mark, `postfix/reinject/smtpd.*lost connection after RCPT`, 10*time.Second)
		if q := pf.Queue(); len(q) != 1 || q[0].QueueID != qid {
			t.Fatalf("queue after the kill: %+v, want only the inbound message", q)
		}
		if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
			t.Fatalf("%d messages delivered by a killed foxproxy", n)
		}

		relay.set(pass)
		fp.restart(t)
		restarted := time.Now()
		m := waitSubject(t, pf, "killed mid-DATA")
		t.Logf("delivered %v after the restart (Postfix's retry)", time.Since(restarted).Round(10*time.Millisecond))
		wantContains(t, "trace", m.Header().Get("X-Foxproxy"), "scan=clean(conventional)", "verdict=deliver")
		pf.WaitQueueEmpty(t, 20*time.Second)
		time.Sleep(2 * time.Second)
		if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
			t.Fatalf("delivered %d times, want exactly once", n)
		}
		if n, out := quarantineEntries(t, fp.ConfigPath); n != 0 {
			t.Fatalf("quarantine entries: %s", out)
		}
	})

	// A client still sending the content when foxproxy dies.
	t.Run("slow client", func(t *testing.T) {
		pf := harness.StartPostfix(t, harness.PostfixOptions{})
		fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr)
		mark := pf.MaillogMark()
		c := dialSMTP(t, fp.Addr, "127.0.0.1")
		c.start()
		c.cmd("DATA", "354")
		c.write("Subject: half a message\r\n\r\nthe first half,\r\n")
		time.Sleep(300 * time.Millisecond)
		fp.kill(t)
		if got := c.closed(10 * time.Second); got != "" {
			t.Errorf("the client heard %q from a killed foxproxy", got)
		}
		pf.WaitLogSince(t, mark, `postfix/reinject/smtpd.*lost connection after RCPT`, 10*time.Second)
		time.Sleep(time.Second)
		if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
			t.Fatalf("%d messages delivered: a partial message got through", n)
		}
		if q := pf.Queue(); len(q) != 0 {
			t.Fatalf("queue after the kill: %+v", q)
		}

		fp.restart(t)
		c = dialSMTP(t, fp.Addr, "127.0.0.1")
		c.start()
		c.cmd("DATA", "354")
		c.write("Subject: half a message\r\n\r\nthe first half,\r\nand the second.\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as ")
		m := waitSubject(t, pf, "half a message")
		if !strings.Contains(string(m.Body()), "and the second.") {
			t.Fatalf("delivered:\n%s", m.Data)
		}
		pf.WaitQueueEmpty(t, 10*time.Second)
		time.Sleep(time.Second)
		if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
			t.Fatalf("delivered %d times, want once", n)
		}
	})
}

// bigMessage is a message of about size bytes with the given subject.
func bigMessage(subject string, size int) []byte {
	var b strings.Builder
	b.Grow(size + 1024)
	b.WriteString("From: <" + harness.SenderAddr + ">\r\nTo: <" + harness.RcptAddr + ">\r\nSubject: " + subject + "\r\n\r\n")
	line := strings.Repeat("q", 78) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return []byte(b.String())
}

// sendGo hands one message to an SMTP server with go-smtp's client (swaks
// is slow with tens of megabytes) and returns the server's reply.
func sendGo(t *testing.T, addr string, data []byte) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(nc)
	defer c.Close()
	if err := c.Hello("crash.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(harness.SenderAddr, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(harness.RcptAddr, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	return resp.StatusText
}

// Killed while writing a large quarantine entry: `foxproxy quarantine
// list` shows nothing (the entry was not complete), Postfix retries, and
// after the restart the message is quarantined exactly once, whole.
func TestCrashSIGKILLMidQuarantine(t *testing.T) {
	const size = 45 << 20
	data := bigMessage("quarantine me", size)
	// The kill must land while the entry is written; should the write
	// finish first (a fast disk and an unlucky schedule), the entry is
	// complete and the scenario is another one: try again on a fresh pair.
	for attempt := 1; attempt <= 3; attempt++ {
		if crashMidQuarantine(t, data, attempt) {
			return
		}
	}
	t.Fatal("three times the quarantine write finished before SIGKILL landed")
}

func crashMidQuarantine(t *testing.T, data []byte, attempt int) (caught bool) {
	qdir := filepath.Join(t.TempDir(), "quarantine")
	pf := harness.StartPostfix(t, harness.PostfixOptions{MainCF: []string{"message_size_limit = 0"}})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		"max_message_bytes: 60MiB",
		"quarantine: {dir: "+qdir+"}",
		`policy: {rules: [{name: hold, if: {header: [{name: Subject, matches: "^quarantine me"}]}, then: quarantine}]}`)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		t.Fatal(err)
	}

	// Watch the directory and kill as soon as an entry's temporary
	// message file appears.
	killed := make(chan string, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			entries, _ := os.ReadDir(qdir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".tmp-") {
					syscall.Kill(fp.PID(), syscall.SIGKILL) // the PID this test started
					killed <- e.Name()
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()

	mark := pf.MaillogMark()
	reply := sendGo(t, pf.InboundAddr, data)
	qid := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`).FindStringSubmatch(reply)
	if qid == nil {
		t.Fatalf("inbound smtpd: %s", reply)
	}
	var tmp string
	select {
	case tmp = <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("no quarantine write seen within a minute; foxproxy log:\n%s", tail(fp.Log(), 10))
	}
	if code := fp.WaitExit(t, 10*time.Second); code != -1 {
		t.Fatalf("foxproxy exited with %d, want killed", code)
	}
	files, _ := os.ReadDir(qdir)
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	if n, _ := quarantineEntries(t, fp.ConfigPath); n != 0 {
		t.Logf("attempt %d: the entry was complete before SIGKILL landed (%v); trying again", attempt, names)
		return false
	}
	t.Logf("attempt %d: killed while %s was being written; directory: %v", attempt, tmp, names)

	o := postfixOutcome(t, pf, mark, qid[1], 30*time.Second)
	if o.status != "deferred" || !strings.Contains(o.reply, "lost connection") {
		t.Fatalf("after the kill: %s (%s), want deferred for the lost connection", o.status, o.reply)
	}
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}

	fp.restart(t)
	got := pf.WaitLogSince(t, mark, qid[1]+`: to=<.*status=sent \(250 2\.0\.0 Ok: quarantined as (\S+)\)`, 60*time.Second)
	pf.WaitQueueEmpty(t, 30*time.Second)
	time.Sleep(2 * time.Second)
	n, out := quarantineEntries(t, fp.ConfigPath)
	if n != 1 || !strings.Contains(out, got[1]) {
		t.Fatalf("quarantine after the retry: %d entries, want exactly %s:\n%s", n, got[1], out)
	}
	eml, err := os.Stat(filepath.Join(qdir, got[1]+".eml"))
	if err != nil || eml.Size() < int64(len(data)) {
		t.Fatalf("quarantined message: %v, %d bytes of at least %d", err, eml.Size(), len(data))
	}
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
	return true
}
