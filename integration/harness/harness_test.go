package harness_test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// wait is the bound for every wait in these tests: far above what a healthy
// machine needs (tenths of a second), so a failure means something is broken.
const wait = 15 * time.Second

func TestFreeAddr(t *testing.T) {
	a, b := harness.FreeAddr(t), harness.FreeAddr(t)
	if a == b {
		t.Fatalf("FreeAddr returned %s twice", a)
	}
	for _, addr := range []string{a, b} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("FreeAddr gave %s, which is not free: %v", addr, err)
		}
		ln.Close()
	}
}

func TestEICAR(t *testing.T) {
	e := harness.EICAR()
	if sum := md5.Sum(e); len(e) != 68 || hex.EncodeToString(sum[:]) != "44d88612fea8a8f36de82e1278abb02f" {
		t.Fatalf("EICAR: %d bytes, md5 %x", len(e), sum)
	}
	raw := harness.EICARMessage(harness.SenderAddr, harness.RcptAddr)
	if bytes.Contains(raw, e) {
		t.Fatalf("EICARMessage carries EICAR in plain text; it must be a base64 attachment")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	found := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if part.FileName() != "eicar.com" {
			continue
		}
		data, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, part))
		if err != nil {
			t.Fatal(err)
		}
		found = bytes.Equal(data, e)
	}
	if !found {
		t.Fatalf("EICARMessage has no eicar.com attachment that decodes to EICAR:\n%s", raw)
	}
}

func TestParseSwaks(t *testing.T) {
	out := strings.Join([]string{
		"=== Trying 127.0.0.1:2525...",
		"<-  220 mx.example.test ESMTP Postfix",
		" -> EHLO vm",
		"<-  250-mx.example.test",
		"<-  250 CHUNKING",
		" -> DATA",
		"<-  354 End data with <CR><LF>.<CR><LF>",
		"<-  250 2.0.0 Ok: queued as 5EA85984272",
		" -> QUIT",
		"<-  221 2.0.0 Bye",
	}, "\n")
	r := harness.ParseSwaks(out)
	if r.Code != 250 || r.QueueID != "5EA85984272" || r.Reply != "250 2.0.0 Ok: queued as 5EA85984272" {
		t.Errorf("ParseSwaks = %d %q %q", r.Code, r.Reply, r.QueueID)
	}
	r = harness.ParseSwaks("<-  220 hi\n -> RCPT TO:<x@example.test>\n<** 550 5.1.1 <x@example.test>: Recipient address rejected\n -> QUIT\n<-  221 2.0.0 Bye\n")
	if r.Code != 550 || r.QueueID != "" {
		t.Errorf("ParseSwaks of a reject = %d %q %q", r.Code, r.Reply, r.QueueID)
	}
}

// TestPostfix drives one private Postfix instance through the flows the proxy
// tests rely on. The subtests share it and run in order: the first needs the
// filter down.
func TestPostfix(t *testing.T) {
	t.Parallel() // each test has its own daemons on their own ports
	filterAddr := harness.FreeAddr(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		FilterAddr:       filterAddr,
		BeforeQueue:      true,
		RejectRecipients: []string{"unknown@example.test"},
	})
	fwd := newForwarder(t, pf.ReinjectAddr)

	t.Run("DeferredWhileFilterDown", func(t *testing.T) {
		res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: "deferred", Body: "hello deferred"})
		if res.Code != 250 || res.QueueID == "" {
			t.Fatalf("inbound smtpd: %q (%v)\n%s", res.Reply, res.Err, res.Output)
		}
		q := pf.WaitDeferred(t, 1, wait)
		if q[0].QueueID != res.QueueID || len(q[0].Recipients) != 1 ||
			!strings.Contains(q[0].Recipients[0].DelayReason, "Connection refused") {
			t.Fatalf("deferred queue = %+v, want %s waiting for %s with Connection refused", q, res.QueueID, filterAddr)
		}
		pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>, relay=none, .*status=deferred`, wait)

		// The filter comes up, a flush: delivered, exactly once.
		fwd.listen(t, filterAddr)
		pf.Flush()
		msgs := pf.WaitDelivered(t, harness.BoxRcpt, 1, wait)
		pf.WaitQueueEmpty(t, wait)
		// With the queue empty nothing is left that could deliver a second copy.
		if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
			t.Fatalf("%d copies delivered, want exactly 1", n)
		}
		if got := msgs[0].Header().Get("Subject"); got != "deferred" {
			t.Errorf("Subject = %q", got)
		}
		pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 `, wait)
	})

	t.Run("ThroughFilter", func(t *testing.T) {
		pf.Reset()
		mark := pf.MaillogMark()
		begin := time.Now()
		res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: "through the filter"})
		if res.Code != 250 || res.QueueID == "" {
			t.Fatalf("inbound smtpd: %q (%v)", res.Reply, res.Err)
		}
		msgs := pf.WaitDelivered(t, harness.BoxRcpt, 1, wait)
		t.Logf("swaks → inbound → filter → reinject → Maildir: %v", time.Since(begin).Round(time.Millisecond))
		// The inbound queue ID's delivery to the filter carries the filter's
		// reply, which is the re-injection smtpd's: the second queue ID.
		m := pf.WaitLogSince(t, mark, res.QueueID+`: to=<rcpt@example\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 2\.0\.0 Ok: queued as (\w+)\)`, wait)
		pf.WaitLogSince(t, mark, m[1]+`: to=<rcpt@example\.test>, relay=virtual, .*status=sent \(delivered to maildir\)`, wait)
		if !bytes.Contains(msgs[0].Data, []byte("id "+m[1])) {
			t.Errorf("delivered message has no Received: header of the re-injection (id %s):\n%s", m[1], msgs[0].Data)
		}
		pf.WaitQueueEmpty(t, wait)
	})

	t.Run("ReinjectionRejectsRecipient", func(t *testing.T) {
		pf.Reset()
		res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, To: []string{"unknown@example.test"}, Subject: "to be bounced"})
		if res.Code != 250 {
			t.Fatalf("inbound smtpd: %q (%v)", res.Reply, res.Err)
		}
		pf.WaitLog(t, res.QueueID+`: to=<unknown@example\.test>, .*dsn=5\.1\.1, status=bounced .*User unknown`, wait)
		dsn := pf.WaitDelivered(t, harness.BoxSender, 1, wait)
		if got := dsn[0].Header().Get("Subject"); got != "Undelivered Mail Returned to Sender" {
			t.Errorf("bounce Subject = %q", got)
		}
		// notify_classes has "bounce": postmaster (box other) gets a copy.
		pm := pf.WaitDelivered(t, harness.BoxOther, 1, wait)
		if got := pm[0].Header().Get("Subject"); got != "Postmaster Copy: Undelivered Mail" {
			t.Errorf("postmaster copy Subject = %q", got)
		}
		pf.WaitQueueEmpty(t, wait)
	})

	t.Run("BeforeQueue", func(t *testing.T) {
		pf.Reset()
		res := harness.Send(t, harness.SendOptions{Server: pf.BeforeQueueAddr, Subject: "before queue"})
		// The filter's reply reaches the client verbatim: the re-injection's.
		if res.Code != 250 || res.QueueID == "" {
			t.Fatalf("before-queue smtpd: %q (%v)\n%s", res.Reply, res.Err, res.Output)
		}
		pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>, relay=virtual, .*status=sent`, wait)
		pf.WaitDelivered(t, harness.BoxRcpt, 1, wait)
	})

	t.Run("RestartKeepsQueue", func(t *testing.T) {
		pf.Reset()
		fwd.close()
		res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: "survives a restart"})
		pf.WaitDeferred(t, 1, wait)
		begin := time.Now()
		pf.Stop()
		stopped := time.Since(begin)
		if c, err := net.DialTimeout("tcp", pf.InboundAddr, time.Second); err == nil {
			c.Close()
			t.Fatalf("inbound port still accepts after Stop")
		}
		begin = time.Now()
		pf.Start()
		t.Logf("postfix stop %v, start %v", stopped.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		if q := pf.Queue(); len(q) != 1 || q[0].QueueID != res.QueueID {
			t.Fatalf("queue after restart = %+v, want %s", q, res.QueueID)
		}
		fwd.listen(t, filterAddr)
		pf.Flush()
		pf.WaitDelivered(t, harness.BoxRcpt, 1, wait)
		pf.WaitQueueEmpty(t, wait)
	})
}

// forwarder is test scaffolding standing in for foxproxy: it accepts SMTP and,
// at the end of DATA, replays the transaction to the downstream smtpd and
// answers with the downstream's final reply (or its refusal of a command).
type forwarder struct {
	downstream string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newForwarder(t *testing.T, downstream string) *forwarder {
	f := &forwarder{downstream: downstream, conns: map[net.Conn]bool{}}
	t.Cleanup(f.close)
	return f
}

func (f *forwarder) listen(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns[c] = true
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(c)
				f.mu.Lock()
				delete(f.conns, c)
				f.mu.Unlock()
			}()
		}
	}()
}

// close stops listening and drops open connections (Postfix may keep one
// cached), then waits for the goroutines.
func (f *forwarder) close() {
	f.mu.Lock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *forwarder) serve(c net.Conn) {
	defer c.Close()
	tp := textproto.NewConn(c)
	reply := func(s string) {
		c.SetDeadline(time.Now().Add(wait))
		tp.PrintfLine("%s", s)
	}
	reply("220 fwd.example.test ESMTP harness test forwarder")
	var from string
	var rcpts []string
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			reply("250 fwd.example.test") // no extensions: no PIPELINING, no XFORWARD
		case "MAIL":
			from = arg[len("FROM:"):]
			reply("250 2.1.0 Ok")
		case "RCPT":
			rcpts = append(rcpts, arg[len("TO:"):])
			reply("250 2.1.5 Ok")
		case "DATA":
			reply("354 End data with <CR><LF>.<CR><LF>")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			reply(relay(f.downstream, from, rcpts, data))
			from, rcpts = "", nil
		case "RSET":
			from, rcpts = "", nil
			reply("250 2.0.0 Ok")
		case "NOOP":
			reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			reply("502 5.5.2 Error: command not recognized")
		}
	}
}

// relay replays one transaction to addr and returns the reply to pass back.
func relay(addr, from string, rcpts []string, data []byte) string {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "451 4.4.1 test forwarder: downstream unavailable"
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	c := textproto.NewConn(conn)
	// step sends cmd (none for the greeting) and reads the reply; it returns
	// the reply as one line and whether it had the wanted code.
	step := func(want int, cmd string) (string, bool) {
		if cmd != "" {
			if err := c.PrintfLine("%s", cmd); err != nil {
				return "451 4.4.2 test forwarder: " + err.Error(), false
			}
		}
		code, msg, err := c.ReadResponse(want)
		if code == 0 {
			return fmt.Sprintf("451 4.4.2 test forwarder: %v", err), false
		}
		return strconv.Itoa(code) + " " + strings.ReplaceAll(msg, "\n", " "), err == nil
	}
	cmds := []string{"", "EHLO fwd.example.test", "MAIL FROM:" + from}
	wants := []int{220, 250, 250}
	for _, rc := range rcpts {
		cmds, wants = append(cmds, "RCPT TO:"+rc), append(wants, 250)
	}
	cmds, wants = append(cmds, "DATA"), append(wants, 354)
	for i, cmd := range cmds {
		if r, ok := step(wants[i], cmd); !ok {
			return r
		}
	}
	w := c.DotWriter()
	w.Write(data)
	w.Close()
	r, _ := step(250, "")
	c.PrintfLine("QUIT")
	return r
}

func TestRbldnsd(t *testing.T) {
	t.Parallel() // each test has its own daemons on their own ports
	rbl := harness.StartRbldnsd(t,
		harness.Zone{Name: "bl.example.test", Type: "ip4set", Lines: []string{
			"$SOA 0 ns.bl.example.test hostmaster.example.test 0 1h 10m 1d 1m",
			":127.0.0.2:Listed in test ip4set: $",
			"127.0.0.2",
			"192.0.2.1",
		}},
		harness.Zone{Name: "bl.example.test", Type: "ip6trie", Lines: []string{":127.0.0.2:Listed in test ip6trie: $", "2001:db8::1"}},
		harness.Zone{Name: "dbl.example.test", Type: "dnset", Lines: []string{":127.0.1.2:Domain $ is listed", "test", ".spam.example.org :127.0.0.4:"}},
	)
	lookup := func(name string) (int, []string) {
		t.Helper()
		m, err := rbl.Query(name, dns.TypeA)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		var addrs []string
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok {
				addrs = append(addrs, a.A.String())
			}
		}
		return m.Rcode, addrs
	}
	expect := func(name string, rcode int, addr string) {
		t.Helper()
		gotRcode, addrs := lookup(name)
		if gotRcode != rcode || (addr != "" && (len(addrs) != 1 || addrs[0] != addr)) || (addr == "" && len(addrs) != 0) {
			t.Errorf("%s: %s %v, want %s %s", name, dns.RcodeToString[gotRcode], addrs, dns.RcodeToString[rcode], addr)
		}
	}

	// RFC 5782 §5 test points.
	expect(harness.ReverseIP(net.ParseIP("127.0.0.2"))+".bl.example.test", dns.RcodeSuccess, "127.0.0.2")
	expect("1.0.0.127.bl.example.test", dns.RcodeNameError, "")
	expect(harness.ReverseIP(net.ParseIP("2001:db8::1"))+".bl.example.test", dns.RcodeSuccess, "127.0.0.2")
	expect("test.dbl.example.test", dns.RcodeSuccess, "127.0.1.2")
	expect("invalid.dbl.example.test", dns.RcodeNameError, "")
	expect("a.b.spam.example.org.dbl.example.test", dns.RcodeSuccess, "127.0.0.4")

	// A changed zone is served right after Reload, even within the same second.
	rbl.SetZone(harness.Zone{Name: "bl.example.test", Type: "ip4set", Lines: []string{"127.0.0.2", "198.51.100.7 :127.0.0.4:"}})
	rbl.Reload()
	expect("7.100.51.198.bl.example.test", dns.RcodeSuccess, "127.0.0.4")
	expect("1.2.0.192.bl.example.test", dns.RcodeNameError, "")

	// Outage and recovery on the same address.
	begin := time.Now()
	rbl.Stop()
	stopped := time.Since(begin)
	if m, err := rbl.Query("2.0.0.127.bl.example.test", dns.TypeA); err == nil {
		t.Fatalf("stopped rbldnsd answered: %v", m)
	}
	begin = time.Now()
	rbl.Start()
	t.Logf("rbldnsd stop %v, start %v", stopped.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	expect("2.0.0.127.bl.example.test", dns.RcodeSuccess, "127.0.0.2")
	expect("7.100.51.198.bl.example.test", dns.RcodeSuccess, "127.0.0.4")

	found := false
	for _, q := range rbl.Queries() {
		found = found || q == "7.100.51.198.bl.example.test A"
	}
	if !found {
		t.Errorf("Queries() lacks 7.100.51.198.bl.example.test A: %q", rbl.Queries())
	}
}

// instream scans data with clamd's zINSTREAM command and returns the reply.
func instream(t *testing.T, addr string, data []byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	var b bytes.Buffer
	b.WriteString("zINSTREAM\x00")
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.Write(data)
	binary.Write(&b, binary.BigEndian, uint32(0)) // end of stream
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString(0)
	if err != nil {
		t.Fatalf("zINSTREAM reply: %q, %v", reply, err)
	}
	return strings.TrimRight(reply, "\x00")
}

// respmod sends body to the ICAP service as an HTTP response (RESPMOD, with
// Allow: 204) and returns the ICAP status line and headers.
func respmod(t *testing.T, icap *harness.CICAP, body []byte) (string, textproto.MIMEHeader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", icap.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	httpHdr := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
	fmt.Fprintf(c, "RESPMOD %s ICAP/1.0\r\nHost: 127.0.0.1\r\nAllow: 204\r\nEncapsulated: res-hdr=0, res-body=%d\r\n\r\n%s%x\r\n%s\r\n0\r\n\r\n",
		icap.URL(), len(httpHdr), httpHdr, len(body), body)
	r := textproto.NewReader(bufio.NewReader(c))
	status, err := r.ReadLine()
	if err != nil {
		t.Fatalf("ICAP status line: %v", err)
	}
	hdr, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("ICAP headers: %v", err)
	}
	return status, hdr
}

func TestClamdAndCICAP(t *testing.T) {
	t.Parallel() // each test has its own daemons on their own ports
	begin := time.Now()
	clamd := harness.StartClamd(t)
	clamdUp := time.Since(begin)
	begin = time.Now()
	icap := harness.StartCICAP(t, clamd)
	t.Logf("clamd start %v, c-icap start %v", clamdUp.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))

	virus := harness.EICARMessage(harness.SenderAddr, harness.RcptAddr)
	clean := []byte("From: <sender@example.test>\r\nSubject: clean\r\n\r\nhello clean world\r\n")

	t.Run("ClamdInstream", func(t *testing.T) {
		if got, want := instream(t, clamd.Addr(), harness.EICAR()), "stream: "+harness.EICARThreat+" FOUND"; got != want {
			t.Errorf("EICAR: %q, want %q", got, want)
		}
		if got, want := instream(t, clamd.Addr(), virus), "stream: "+harness.EICARThreat+" FOUND"; got != want {
			t.Errorf("EICARMessage: %q, want %q", got, want)
		}
		if got := instream(t, clamd.Addr(), clean); got != "stream: OK" {
			t.Errorf("clean: %q, want stream: OK", got)
		}
	})

	t.Run("CICAPRespmod", func(t *testing.T) {
		status, hdr := respmod(t, icap, virus)
		if !strings.HasPrefix(status, "ICAP/1.0 200") || !strings.Contains(hdr.Get("X-Infection-Found"), "Threat="+harness.EICARThreat) {
			t.Errorf("EICARMessage: %s %v, want 200 with X-Infection-Found Threat=%s", status, hdr, harness.EICARThreat)
		}
		if status, hdr := respmod(t, icap, clean); !strings.HasPrefix(status, "ICAP/1.0 204") {
			t.Errorf("clean: %s %v, want 204", status, hdr)
		}
	})

	t.Run("ClamdOutage", func(t *testing.T) {
		begin := time.Now()
		clamd.Stop()
		stopped := time.Since(begin)
		if c, err := net.DialTimeout("tcp", clamd.Addr(), time.Second); err == nil {
			c.Close()
			t.Fatalf("clamd still accepts after Stop")
		}
		// What c-icap does without its engine: the scan package must not
		// take this for "clean".
		status, hdr := respmod(t, icap, virus)
		t.Logf("c-icap with clamd down: %s %v", status, hdr)
		if strings.HasPrefix(status, "ICAP/1.0 204") {
			t.Errorf("c-icap with clamd down answered %s, as for clean content", status)
		}
		begin = time.Now()
		clamd.Start()
		t.Logf("clamd stop %v, restart %v", stopped.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		if status, hdr := respmod(t, icap, virus); !strings.Contains(hdr.Get("X-Infection-Found"), harness.EICARThreat) {
			t.Errorf("after clamd restart: %s %v, want an infection", status, hdr)
		}
	})

	t.Run("CICAPRestart", func(t *testing.T) {
		begin := time.Now()
		icap.Stop()
		stopped := time.Since(begin)
		if c, err := net.DialTimeout("tcp", icap.Addr(), time.Second); err == nil {
			c.Close()
			t.Fatalf("c-icap still accepts after Stop")
		}
		begin = time.Now()
		icap.Start()
		t.Logf("c-icap stop %v, restart %v", stopped.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		if status, _ := respmod(t, icap, clean); !strings.HasPrefix(status, "ICAP/1.0 204") {
			t.Errorf("after restart, clean: %s", status)
		}
	})
}

// recordTB records Errorf instead of failing, to test a failure path.
type recordTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestProcess(t *testing.T) {
	t.Parallel() // each test has its own daemons on their own ports
	begin := time.Now()
	bin := harness.Build(t, "./integration/harness/testdata/sigproc")
	t.Logf("build %v", time.Since(begin).Round(time.Millisecond))
	if again := harness.Build(t, "./integration/harness/testdata/sigproc"); again != bin {
		t.Errorf("second Build gave %s, want the cached %s", again, bin)
	}

	p := harness.RunProcess(t, bin)
	m := p.WaitLog(t, `sigproc started pid=(\d+)`, wait)
	if m[1] != strconv.Itoa(p.PID()) {
		t.Errorf("logged pid %s, PID() %d", m[1], p.PID())
	}
	p.Signal(syscall.SIGHUP)
	p.WaitLog(t, "sigproc got hangup", wait)

	mark, oldPID := p.LogMark(), p.PID()
	p.Restart()
	p.WaitLogSince(t, mark, "sigproc started", wait)
	if p.PID() == oldPID || !p.Running() {
		t.Errorf("after Restart: PID %d (was %d), running %v", p.PID(), oldPID, p.Running())
	}
	p.Stop()
	if p.Running() || strings.Count(p.Log(), "sigproc bye") != 2 {
		t.Errorf("after Stop: running %v, log:\n%s", p.Running(), p.Log())
	}

	if code := harness.RunProcess(t, bin, "exit3").WaitExit(t, wait); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}

	// A process that ignores SIGTERM is killed after StopTimeout, and that is
	// reported as a failure.
	rec := &recordTB{TB: t}
	stubborn := harness.RunProcess(rec, bin, "ignore-term")
	stubborn.WaitLog(t, "sigproc started", wait)
	stubborn.StopTimeout = 200 * time.Millisecond
	stubborn.Stop()
	if stubborn.Running() || len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "killed") {
		t.Errorf("stubborn process: running %v, errors %q", stubborn.Running(), rec.errors)
	}
}
