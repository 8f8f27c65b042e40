package integration

// Abuse and bad input against the foxproxy binary: each case gets the reply
// README.md documents, and right after it a normal client is still served.
// One foxproxy takes all the cases in turn, and its peak memory (VmHWM) is
// measured over the whole run.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// rawSMTP is a line-level SMTP client for what no well-behaved client does.
type rawSMTP struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialSMTP connects to addr from the loopback address local.
func dialSMTP(t *testing.T, addr, local string) *rawSMTP {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connect to %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawSMTP{t: t, c: c, br: bufio.NewReaderSize(c, 64<<10)}
}

func (r *rawSMTP) write(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// readReply reads one whole reply (its lines joined by "\n") within timeout.
func (r *rawSMTP) readReply(timeout time.Duration) (string, error) {
	r.c.SetReadDeadline(time.Now().Add(timeout))
	var lines []string
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

// expect reads a reply that must start with prefix.
func (r *rawSMTP) expect(prefix string) string {
	r.t.Helper()
	got, err := r.readReply(60 * time.Second)
	if err != nil {
		r.t.Fatalf("reading the reply (want %q): %v (got %q)", prefix, err, got)
	}
	if !strings.HasPrefix(got, prefix) {
		r.t.Fatalf("reply %q, want %q", got, prefix)
	}
	return got
}

func (r *rawSMTP) cmd(line, prefix string) string {
	r.t.Helper()
	r.write(line + "\r\n")
	return r.expect(prefix)
}

// closed waits for the server to close the connection and returns what it
// sent before, failing after timeout.
func (r *rawSMTP) closed(timeout time.Duration) string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(r.br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		r.t.Fatalf("connection still open after %v (read %q)", timeout, b)
	}
	return string(b)
}

// start greets and opens a transaction for rcpt@example.test.
func (r *rawSMTP) start() {
	r.t.Helper()
	r.expect("220 ")
	r.cmd("EHLO abuse.example.test", "250")
	r.cmd("MAIL FROM:<"+harness.SenderAddr+">", "250")
	r.cmd("RCPT TO:<"+harness.RcptAddr+">", "250")
}

// abuseWorld is the one foxproxy the abuse cases share, in front of real
// Postfix (its re-injection smtpd delivers to the Maildirs) with WRS on a
// real DNS list.
type abuseWorld struct {
	pf *harness.Postfix
	fp *foxproxy
}

const abuseMaxMessage = 60 << 20

// serves checks that a normal client still gets its message delivered.
func (w *abuseWorld) serves(t *testing.T) {
	t.Helper()
	c := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	c.start()
	c.cmd("DATA", "354")
	subject := fmt.Sprintf("normal after %s %d", t.Name(), time.Now().UnixNano())
	c.write("Subject: " + subject + "\r\n\r\nA normal message.\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	c.cmd("QUIT", "221")
	waitSubject(t, w.pf, subject)
}

func TestAbuse(t *testing.T) {
	lists := startDNSLists(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		BeforeQueue: true,
		// The re-injection smtpd and the Maildir take what foxproxy
		// accepts (Postfix's defaults are 10 MB and 51 MB). The
		// before-queue smtpd refuses bare LF itself (Postfix 3.7.10's
		// strictest setting), also from loopback clients ($mynetworks is
		// excluded by default): Postfix forwards every line with CRLF, so
		// a bare LF it let through would reach foxproxy as a line end.
		MainCF: []string{"message_size_limit = 0", "virtual_mailbox_limit = 0",
			"smtpd_forbid_bare_newline = reject", "smtpd_forbid_bare_newline_exclusions ="},
	})
	qdir := filepath.Join(t.TempDir(), "quarantine")
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		fmt.Sprintf("max_message_bytes: %d", abuseMaxMessage),
		"xforward_clients: [127.0.0.1/32]",
		"limits: {max_recipients: 100, max_sessions: 600}",
		"timeouts: {command: 5s, data: 4s}",
		"dns: {servers: ["+lists.Addr()+"], timeout: 1s}",
		"wrs:",
		"  zones: [{zone: dbl.example.test, codes: {127.0.1.2: spam, 127.0.1.4: phish}}]",
		"  budget: 5s",
		"quarantine: {dir: "+qdir+"}",
		"policy:",
		"  rules:",
		"    - {name: wrs-phish, if: {wrs: [phish]}, then: quarantine}",
	)
	w := &abuseWorld{pf: pf, fp: fp}
	w.serves(t)

	peak := int64(0)
	measure := func(t *testing.T) {
		if v := vmHWM(t, fp.PID()); v > peak {
			peak = v
			t.Logf("foxproxy peak RSS now %.1f MiB", float64(v)/(1<<20))
		}
	}
	cases := []struct {
		name string
		run  func(t *testing.T, w *abuseWorld)
	}{
		{"smuggling end-of-data variants", abuseSmuggling},
		{"smuggling through before-queue Postfix", abuseSmugglingBeforeQueue},
		{"NUL bytes", abuseNUL},
		{"command lines over the limit", abuseLongLines},
		{"too many commands", abuseManyCommands},
		{"10000 RCPTs", abuseRecipients},
		{"message at and over max_message_bytes", abuseSize},
		{"client trickling a byte a second", abuseTrickle},
		{"500 idle connections", abuseIdle},
		{"XFORWARD from an untrusted client", abuseXforward},
		{"MIME bombs", abuseMIMEBombs},
		{"1 MB header lines", abuseLongHeader},
		{"invalid UTF-8 and unknown charsets", abuseCharsets},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, w)
			w.serves(t)
			measure(t)
		})
	}
	measure(t)
	t.Logf("abuse: foxproxy peak RSS (VmHWM) over all cases: %.1f MiB", float64(peak)/(1<<20))
	if peak > 300<<20 {
		t.Errorf("foxproxy's peak RSS %.1f MiB is over the 300 MiB bound", float64(peak)/(1<<20))
	}
	if strings.Contains(fp.Log(), "panic") || strings.Contains(fp.Log(), "internal error") {
		t.Errorf("foxproxy logged a panic:\n%s", tail(fp.Log(), 20))
	}
}

// smuggled is what follows a fake end of data: a second transaction that
// must stay content.
const smuggled = "MAIL FROM:<evil@example.test>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"

// The end-of-data variants of SMTP smuggling (RFC 5321 §2.3.8, the 2023
// SEC Consult findings): none ends the message, each makes the message
// refused with 550 5.5.2, the smuggled transaction is never delivered,
// and the session goes on.
var smugglingVariants = []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r.\r", "\r.\n", "\n.\r"}

func abuseSmuggling(t *testing.T, w *abuseWorld) {
	for _, v := range smugglingVariants {
		c := dialSMTP(t, w.fp.Addr, "127.0.0.1")
		c.start()
		c.cmd("DATA", "354")
		c.write("Subject: smuggling " + strconv.Quote(v) + "\r\n\r\nbody" + v + smuggled + ".\r\n")
		c.expect("550 5.5.2 ")
		// The smuggled commands were content: the next reply answers NOOP.
		c.cmd("NOOP", "250")
		c.cmd("QUIT", "221")
	}
	noSmuggled(t, w.pf)
	for _, m := range w.pf.Delivered(harness.BoxRcpt) {
		if strings.Contains(string(m.Data), "evil") {
			t.Fatalf("a message with the smuggling attempt in it was delivered:\n%s", m.Data)
		}
	}
}

// noSmuggled fails if a transaction hidden in content was delivered: a
// message from evil@example.test.
func noSmuggled(t *testing.T, pf *harness.Postfix) {
	t.Helper()
	time.Sleep(time.Second)
	for _, m := range pf.Delivered(harness.BoxRcpt) {
		if strings.Contains(m.Header().Get("Return-Path"), "evil@") {
			t.Fatalf("a smuggled message was delivered:\n%s", m.Data)
		}
	}
}

// Through Postfix's before-queue smtpd (smtpd_proxy_filter): Postfix
// refuses bare LF itself; a bare CR reaches foxproxy, which refuses it. The
// client sees a 5xx either way and nothing smuggled arrives.
func abuseSmugglingBeforeQueue(t *testing.T, w *abuseWorld) {
	for _, v := range smugglingVariants {
		c := dialSMTP(t, w.pf.BeforeQueueAddr, "127.0.0.1")
		c.start()
		c.cmd("DATA", "354")
		c.write("Subject: smuggling " + strconv.Quote(v) + "\r\n\r\nbody" + v + smuggled + ".\r\n")
		got, err := c.readReply(30 * time.Second)
		if err != nil || !strings.HasPrefix(got, "5") {
			t.Errorf("variant %q through before-queue Postfix: reply %q (%v), want a 5xx", v, got, err)
		}
	}
	noSmuggled(t, w.pf)
	// And a normal message through the same path is delivered.
	c := dialSMTP(t, w.pf.BeforeQueueAddr, "127.0.0.1")
	c.start()
	c.cmd("DATA", "354")
	c.write("Subject: before-queue after smuggling\r\n\r\nfine\r\n.\r\n")
	c.expect("250 ")
	waitSubject(t, w.pf, "before-queue after smuggling")
}

func abuseNUL(t *testing.T, w *abuseWorld) {
	c := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	c.start()
	c.cmd("DATA", "354")
	c.write("Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
	c.expect("550 5.6.0 ")
	// In a command: refused, the session goes on.
	c.write("MAIL FROM:<a\x00b@example.test>\r\n")
	if got, err := c.readReply(10 * time.Second); err != nil || !strings.HasPrefix(got, "5") {
		t.Errorf("NUL in MAIL: %q (%v), want a 5xx", got, err)
	}
	c.cmd("NOOP", "250")
}

func abuseLongLines(t *testing.T, w *abuseWorld) {
	c := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	c.expect("220 ")
	c.cmd("EHLO abuse.example.test", "250")
	// limits.max_command_line (4096) counts the CRLF: this one fits...
	c.cmd("NOOP "+strings.Repeat("x", 4096-len("NOOP \r\n")), "250")
	// ...one byte more does not, nor does a megabyte.
	c.cmd("NOOP "+strings.Repeat("x", 4096-len("NOOP \r\n")+1), "500 5.5.2 ")
	c.cmd("MAIL FROM:<"+strings.Repeat("a", 1<<20)+"@example.test>", "500 5.5.2 ")
	c.cmd("NOOP", "250")
	c.cmd("MAIL FROM:<"+harness.SenderAddr+">", "250")
	c.cmd("RSET", "250")
}

// limits.max_commands (100000 by default) ends a session with 421 4.7.0.
func abuseManyCommands(t *testing.T, w *abuseWorld) {
	c := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	c.expect("220 ")
	const limit = 100000
	go func() {
		var b bytes.Buffer
		for range limit + 10 {
			b.WriteString("NOOP\r\n")
		}
		c.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		c.c.Write(b.Bytes()) // the server closes before it reads the last lines
	}()
	for i := 1; i <= limit; i++ {
		got, err := c.readReply(30 * time.Second)
		if err != nil || !strings.HasPrefix(got, "250") {
			t.Fatalf("NOOP %d: %q (%v)", i, got, err)
		}
	}
	c.expect("421 4.7.0 ")
	c.closed(10 * time.Second)
}

// 10,000 RCPTs, pipelined: limits.max_recipients (100) are taken, every
// further one gets 452 4.5.3, and the message then goes to the 100.
func abuseRecipients(t *testing.T, w *abuseWorld) {
	c := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	c.expect("220 ")
	c.cmd("EHLO abuse.example.test", "250")
	c.cmd("MAIL FROM:<"+harness.SenderAddr+">", "250")
	go func() {
		var b bytes.Buffer
		for range 10000 {
			b.WriteString("RCPT TO:<" + harness.RcptAddr + ">\r\n")
		}
		c.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		c.c.Write(b.Bytes())
	}()
	ok, limited := 0, 0
	for i := 0; i < 10000; i++ {
		got, err := c.readReply(30 * time.Second)
		switch {
		case err != nil:
			t.Fatalf("RCPT %d: %v", i+1, err)
		case strings.HasPrefix(got, "250"):
			ok++
		case strings.HasPrefix(got, "452 4.5.3"):
			limited++
		default:
			t.Fatalf("RCPT %d: %q", i+1, got)
		}
	}
	if ok != 100 || limited != 9900 {
		t.Fatalf("%d RCPTs accepted and %d limited, want 100 and 9900", ok, limited)
	}
	c.cmd("DATA", "354")
	c.write("Subject: to a hundred recipients\r\n\r\nhi\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	waitSubject(t, w.pf, "to a hundred recipients")
	c.cmd("NOOP", "250")
}

// sizedMessage is a message of exactly n bytes of content (as counted
// after the final dot is removed), with no line needing dot-stuffing.
func sizedMessage(subject string, n int) string {
	var b strings.Builder
	b.Grow(n + 8)
	b.WriteString("Subject: " + subject + "\r\n\r\n")
	line := strings.Repeat("x", 998) + "\r\n"
	for n-b.Len() > len(line)+2 {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("y", n-b.Len()-2) + "\r\n") // 3 to 1002 bytes
	return b.String()
}

func abuseSize(t *testing.T, w *abuseWorld) {
	c := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	c.expect("220 ")
	ehlo := c.cmd("EHLO abuse.example.test", "250")
	if !strings.Contains(ehlo, fmt.Sprintf("SIZE %d", abuseMaxMessage)) {
		t.Errorf("EHLO does not advertise SIZE %d:\n%s", abuseMaxMessage, ehlo)
	}
	c.cmd(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", harness.SenderAddr, abuseMaxMessage+1), "552 5.3.4 ")

	over := sizedMessage("one byte over", abuseMaxMessage+1)
	if len(over) != abuseMaxMessage+1 {
		t.Fatalf("built %d bytes", len(over))
	}
	c.cmd("MAIL FROM:<"+harness.SenderAddr+">", "250")
	c.cmd("RCPT TO:<"+harness.RcptAddr+">", "250")
	c.cmd("DATA", "354")
	c.write(over + ".\r\n")
	c.expect("552 5.3.4 ")

	at := sizedMessage("exactly at the limit", abuseMaxMessage)
	c.cmd("MAIL FROM:<"+harness.SenderAddr+">", "250")
	c.cmd("RCPT TO:<"+harness.RcptAddr+">", "250")
	c.cmd("DATA", "354")
	c.write(at + ".\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	m := waitSubject(t, w.pf, "exactly at the limit")
	if len(m.Data) < abuseMaxMessage-abuseMaxMessage/500 { // LF line ends in the Maildir: 1 of 1000 bytes less
		t.Errorf("delivered %d bytes of a %d-byte message", len(m.Data), abuseMaxMessage)
	}
	c.cmd("NOOP", "250")
}

// A client that sends one byte a second is cut off: in DATA by
// timeouts.data (4s here), in a command line by timeouts.command (5s).
// Nothing of its message is delivered.
func abuseTrickle(t *testing.T, w *abuseWorld) {
	type result struct {
		took time.Duration
		last string
		err  error
	}
	trickle := func(c *rawSMTP, limit time.Duration) result {
		start := time.Now()
		text := "Subject: trickle\r\n\r\nthis never ends"
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := 0; ; i++ {
				c.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.c.Write([]byte{text[i%len(text)]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
		c.c.SetReadDeadline(time.Now().Add(limit + 15*time.Second))
		b, err := io.ReadAll(c.br)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return result{time.Since(start), string(b), fmt.Errorf("still open after %v", limit+15*time.Second)}
		}
		return result{time.Since(start), strings.TrimSpace(string(b)), nil}
	}
	inData := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	inData.start()
	inData.cmd("DATA", "354")
	inCommand := dialSMTP(t, w.fp.Addr, "127.0.0.1")
	inCommand.expect("220 ")
	limits := map[string]time.Duration{"in DATA": 4 * time.Second, "in a command": 5 * time.Second}
	var mu sync.Mutex
	results := map[string]result{}
	var wg sync.WaitGroup
	for name, c := range map[string]*rawSMTP{"in DATA": inData, "in a command": inCommand} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := trickle(c, limits[name])
			mu.Lock()
			results[name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name, r := range results {
		t.Logf("trickle %s: cut off after %v with %q", name, r.took.Round(100*time.Millisecond), r.last)
		switch {
		case r.err != nil:
			t.Errorf("trickle %s: %v", name, r.err)
		case r.took < limits[name]-time.Second:
			t.Errorf("trickle %s: cut off after %v, before the %v timeout", name, r.took, limits[name])
		case r.last != "" && !strings.HasPrefix(r.last, "421 4.4.2") && !strings.HasPrefix(r.last, "451 4.4.2"):
			t.Errorf("trickle %s: last words %q, want a 4xx or nothing", name, r.last)
		}
	}
	for _, m := range w.pf.Delivered(harness.BoxRcpt) {
		if strings.Contains(string(m.Data), "this never ends") {
			t.Fatalf("part of the trickled message was delivered:\n%s", m.Data)
		}
	}
}

// 500 idle connections: all greeted (max_sessions is 600), a normal client
// is served meanwhile; past the limit a connection gets 421 4.3.2.
func abuseIdle(t *testing.T, w *abuseWorld) {
	open := func(n int) ([]*rawSMTP, map[string]int) {
		conns := make([]*rawSMTP, n)
		replies := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{Timeout: 10 * time.Second}
				nc, err := d.Dial("tcp", w.fp.Addr)
				if err != nil {
					mu.Lock()
					replies["connect: "+err.Error()]++
					mu.Unlock()
					return
				}
				c := &rawSMTP{t: t, c: nc, br: bufio.NewReader(nc)}
				got, err := c.readReply(20 * time.Second)
				mu.Lock()
				defer mu.Unlock()
				conns[i] = c
				if err != nil {
					replies["error: "+err.Error()]++
					return
				}
				replies[got[:min(9, len(got))]]++
			}()
		}
		wg.Wait()
		return conns, replies
	}
	closeAll := func(cs []*rawSMTP) {
		for _, c := range cs {
			if c != nil {
				c.c.Close()
			}
		}
	}
	idle, replies := open(500)
	defer closeAll(idle)
	if replies["220 foxpr"] != 500 {
		t.Fatalf("500 idle connections: %v, want 500 greetings", replies)
	}
	w.serves(t)
	more, replies := open(150)
	defer closeAll(more)
	// 500 idle + 150 more against max_sessions 600: about 50 are over.
	// (A session ends a moment after its connection closes, so count
	// loosely: some over the limit, none left without an answer.)
	if replies["421 4.3.2"] < 30 || replies["220 foxpr"]+replies["421 4.3.2"] != 150 {
		t.Fatalf("150 more connections: %v, want greetings and 421 4.3.2 only", replies)
	}
	t.Logf("150 more connections over 500 idle: %v", replies)
	closeAll(more)
	closeAll(idle)
	waitFor(t, "the sessions to end", 20*time.Second, func() bool {
		_, text := httpGet(t, w.fp.Admin+"/metrics", "")
		v, ok := metric(text, "foxproxy_sessions")
		return ok && v < 5
	})
}

// A client not in xforward_clients: EHLO does not offer XFORWARD, the
// command is refused with 550 5.7.0, the message is judged by the TCP
// peer's address, not the claimed one.
func abuseXforward(t *testing.T, w *abuseWorld) {
	c := dialSMTP(t, w.fp.Addr, "127.0.0.2")
	c.expect("220 ")
	if ehlo := c.cmd("EHLO abuse.example.test", "250"); strings.Contains(ehlo, "XFORWARD") {
		t.Errorf("XFORWARD offered to an untrusted client:\n%s", ehlo)
	}
	c.cmd("XFORWARD ADDR=192.0.2.99 NAME=trusted.example", "550 5.7.0 ")
	c.cmd("MAIL FROM:<"+harness.SenderAddr+">", "250")
	c.cmd("RCPT TO:<"+harness.RcptAddr+">", "250")
	c.cmd("DATA", "354")
	c.write("Subject: untrusted xforward\r\n\r\nhi\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	waitSubject(t, w.pf, "untrusted xforward")
	for _, l := range w.fp.messages(t) {
		if l["client"] == "192.0.2.99" {
			t.Fatalf("the claimed client was believed: %v", l)
		}
	}
}

// sendDirect sends data as one message straight to foxproxy and returns
// its reply to the final dot.
func sendDirect(t *testing.T, addr, data string) string {
	t.Helper()
	c := dialSMTP(t, addr, "127.0.0.1")
	c.start()
	c.cmd("DATA", "354")
	// Dot-stuff: these messages are made by the test and may hold lines
	// starting with a dot.
	data = strings.ReplaceAll(data, "\r\n.", "\r\n..")
	if strings.HasPrefix(data, ".") {
		data = "." + data
	}
	c.write(data + ".\r\n")
	got, err := c.readReply(90 * time.Second)
	if err != nil {
		t.Fatalf("reply to the final dot: %v", err)
	}
	return got
}

var quarantinedOrQueued = regexp.MustCompile(`^250 2\.0\.0 Ok: (queued|quarantined) as `)

// MIME bombs for WRS: each is answered within the budget with a normal
// reply (delivered or quarantined), never a 4xx or a crash.
func abuseMIMEBombs(t *testing.T, w *abuseWorld) {
	link := "https://login.evil.example/x\r\n"
	bombs := map[string]string{}

	var deep strings.Builder
	deep.WriteString("Subject: deep nesting\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	const depth = 5000
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&deep, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&deep, "--b%d\r\nContent-Type: text/plain\r\n\r\n%s", depth, link)
	for i := depth; i >= 0; i-- {
		fmt.Fprintf(&deep, "--b%d--\r\n", i)
	}
	bombs["deep nesting"] = deep.String()

	var many strings.Builder
	many.WriteString("Subject: many parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n\r\n")
	for i := range 20000 {
		fmt.Fprintf(&many, "--p\r\nContent-Type: text/plain\r\n\r\nhttps://part%d.example.org/ %s", i, link)
	}
	many.WriteString("--p--\r\n")
	bombs["many parts"] = many.String()

	var big strings.Builder
	big.WriteString("Subject: big base64 part\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"q\"\r\n\r\n")
	big.WriteString("--q\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	text := []byte(strings.Repeat("https://login.evil.example/path "+strings.Repeat("a", 60)+"\n", 1000))
	enc := base64.StdEncoding.EncodeToString(text)
	line := 0
	for big.Len() < 50<<20 {
		for i := 0; i+76 <= len(enc) && big.Len() < 50<<20; i += 76 {
			big.WriteString(enc[i : i+76])
			big.WriteString("\r\n")
			line++
		}
	}
	big.WriteString("--q--\r\n")
	bombs["50 MB base64 part"] = big.String()

	for name, data := range bombs {
		start := time.Now()
		got := sendDirect(t, w.fp.Addr, data)
		t.Logf("%s (%.1f MB): %q after %v", name, float64(len(data))/1e6, got, time.Since(start).Round(10*time.Millisecond))
		if !quarantinedOrQueued.MatchString(got) {
			t.Errorf("%s: %q, want delivered or quarantined", name, got)
		}
	}
}

func abuseLongHeader(t *testing.T, w *abuseWorld) {
	for _, data := range []string{
		"Subject: long header\r\nX-Long: " + strings.Repeat("h", 1<<20) + "\r\n\r\nbody https://login.evil.example/\r\n",
		"Subject: " + strings.Repeat("s", 1<<20) + "\r\n\r\nbody\r\n",
		"Subject: folded\r\nX-Folded: a\r\n" + strings.Repeat("\tcontinued line\r\n", 70000) + "\r\nbody\r\n",
	} {
		if got := sendDirect(t, w.fp.Addr, data); !quarantinedOrQueued.MatchString(got) {
			t.Errorf("%q...: %q, want delivered or quarantined", data[:30], got)
		}
	}
}

// Unknown charsets are read as they are and invalid UTF-8 is no reason to
// skip a part: the listed link in each is still found (quarantined).
func abuseCharsets(t *testing.T, w *abuseWorld) {
	for name, data := range map[string]string{
		"unknown charset": "Subject: unknown charset\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\n" +
			"\xfe\xff see https://login.evil.example/a\r\n",
		"invalid UTF-8": "Subject: =?utf-8?q?=ff=fe?= invalid\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
			"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\xbc https://login.evil.example/b \xed\xa0\x80\r\n",
		"unknown charset in HTML": "Subject: html charset\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=\"x-\xff\xfe\"\r\n\r\n" +
			"<meta charset=\"bogus-9\"><a href=\"https://login.evil.example/c\">x</a>\r\n",
		"8-bit header": "Subject: \xe6\x97\xa5\xe6\x9c\xac\xff\r\nFrom: \xff\xfe <a@example.test>\r\n\r\nhttps://login.evil.example/d\r\n",
	} {
		got := sendDirect(t, w.fp.Addr, data)
		if !strings.HasPrefix(got, "250 2.0.0 Ok: quarantined as ") {
			t.Errorf("%s: %q, want the listed link found and the message quarantined", name, got)
		}
	}
}

// A client outside allowed_clients gets 554 5.7.1 instead of a greeting,
// and a client inside is still served.
func TestAbuseClientNotAllowed(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, "allowed_clients: [127.0.0.1/32]")
	c := dialSMTP(t, fp.Addr, "127.0.0.2")
	if got := c.closed(10 * time.Second); !strings.HasPrefix(got, "554 5.7.1 ") {
		t.Fatalf("client outside allowed_clients got %q, want 554 5.7.1 and a close", got)
	}
	fp.WaitLog(t, `"connection refused: client not in allowed_clients".*"client":"127.0.0.2"`, 5*time.Second)
	(&abuseWorld{pf: pf, fp: fp}).serves(t)
}
