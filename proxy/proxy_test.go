package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/settings"
)

const sampleMessage = "From: a@example.test\r\nTo: b@example.test\r\nSubject: hello\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n.\tdot tab\r\nlast line\r\n"

// Bytes in = bytes out plus the trace header, and the 250 is the downstream's.
func TestDeliverBytesInBytesOut(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	c, err := smtp.Dial(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := transact(c, "a@example.test", []string{"b@example.test"}, sampleMessage)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.StatusText, "queued as DS12345") {
		t.Fatalf("final reply %q is not the downstream's", resp.StatusText)
	}
	msgs := ds.messages()
	if len(msgs) != 1 {
		t.Fatalf("downstream got %d messages", len(msgs))
	}
	header, rest := stripTrace(t, msgs[0].data)
	if string(rest) != sampleMessage {
		t.Fatalf("content changed:\n got %q\nwant %q", rest, sampleMessage)
	}
	for _, want := range []string{"foxproxy/", "host=foxproxy.test", "verdict=deliver", "rule=default"} {
		if !strings.Contains(header, want) {
			t.Errorf("trace header %q lacks %q", header, want)
		}
	}
	if msgs[0].from != "a@example.test" || len(msgs[0].rcpts) != 1 || msgs[0].rcpts[0] != "b@example.test" {
		t.Fatalf("envelope changed: %+v", msgs[0])
	}
	// One log line per message, with the downstream's queue ID.
	entries := p.logs.FilterMessage("message").All()
	if len(entries) != 1 {
		t.Fatalf("%d summary lines", len(entries))
	}
	f := entries[0].ContextMap()
	if f["downstream_queue_id"] != "DS12345" || f["verdict"] != "deliver" || f["size"] != int64(len(sampleMessage)) {
		t.Fatalf("summary line: %v", f)
	}
}

// The downstream's refusals reach the client exactly.
func TestRepliesMirrorTheDownstream(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)

	ds.set(func(d *testDownstream) {
		d.rejectRcpt["nobody@example.test"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: "<nobody@example.test>: Recipient address rejected: User unknown"}
	})
	c, err := sendMail(t, p.addr, "a@example.test", []string{"nobody@example.test"}, sampleMessage)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) ||
		!strings.Contains(se.Message, "User unknown") {
		t.Fatalf("RCPT: got %v, want the downstream's 550 5.1.1", err)
	}
	c.Close()

	ds.set(func(d *testDownstream) {
		d.rejectMail = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address rejected"}
	})
	_, err = sendMail(t, p.addr, "bad@example.test", []string{"b@example.test"}, sampleMessage)
	if smtpCode(err) != 553 {
		t.Fatalf("MAIL: got %v, want the downstream's 553", err)
	}

	for _, code := range []int{554, 452} {
		ds.set(func(d *testDownstream) {
			d.rejectMail = nil
			d.dataReply = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 6, 0}, Message: "content refused"}
		})
		_, err = sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
		if smtpCode(err) != code {
			t.Fatalf("DATA: got %v, want the downstream's %d", err, code)
		}
	}
	if n := len(ds.messages()); n != 0 {
		t.Fatalf("%d messages delivered despite refusals", n)
	}
}

// A recipient the downstream refuses is dropped; the others get the message.
func TestPartialRecipients(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	ds.set(func(d *testDownstream) {
		d.rejectRcpt["gone@example.test"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	})
	c, err := smtp.Dial(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Mail("a@example.test", nil)
	if err := c.Rcpt("one@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("gone@example.test", nil); smtpCode(err) != 550 {
		t.Fatalf("refused recipient: %v", err)
	}
	if err := c.Rcpt("two@example.test", nil); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Data()
	io.WriteString(w, sampleMessage)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m := ds.messages()
	if len(m) != 1 || strings.Join(m[0].rcpts, ",") != "one@example.test,two@example.test" {
		t.Fatalf("delivered: %+v", m)
	}
}

// DSN and SMTPUTF8 parameters reach the downstream unchanged.
func TestDSNAndUTF8PassThrough(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	r := dialRaw(t, p.addr)
	ehlo := r.greet()
	for _, ext := range []string{"PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "CHUNKING"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, ehlo)
		}
	}
	r.send("MAIL FROM:<jürgen@example.test> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2Bid42 SIZE=300\r\n")
	r.expect("250 ")
	r.send("RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Borig@example.test\r\n")
	r.expect("250 ")
	r.send("DATA\r\n")
	r.expect("354 ")
	r.send("Subject: utf8 ünïcode\r\n\r\nbody\r\n.\r\n")
	r.expect("250 ")
	m := ds.lastMail()
	if m.from != "jürgen@example.test" || !m.opts.UTF8 || m.opts.Body != smtp.Body8BitMIME ||
		m.opts.Return != smtp.DSNReturnHeaders || m.opts.EnvelopeID != "QQ+id42" || m.opts.Size != 300 {
		t.Fatalf("MAIL parameters changed: %+v %+v", m.from, m.opts)
	}
	msg := ds.messages()[0]
	ro := msg.rcptOpts[0]
	if len(ro.Notify) != 2 || ro.Notify[0] != smtp.DSNNotifySuccess || ro.Notify[1] != smtp.DSNNotifyFailure ||
		ro.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || ro.OriginalRecipient != "b+orig@example.test" {
		t.Fatalf("RCPT parameters changed: %+v", ro)
	}

	// BODY=7BIT stays 7BIT, and no BODY stays no BODY: go-smtp's client
	// alone would send BODY=8BITMIME either way.
	for _, tc := range []struct {
		param string
		want  smtp.BodyType
	}{{" BODY=7BIT", smtp.Body7Bit}, {"", ""}} {
		r.send("MAIL FROM:<a@example.test>" + tc.param + "\r\n")
		r.expect("250 ")
		if got := ds.lastMail().opts.Body; got != tc.want {
			t.Errorf("MAIL%s arrived with BODY=%q", tc.param, got)
		}
		r.send("RSET\r\n")
		r.expect("250 ")
	}
}

// Every failure on the way answers 4xx: Postfix keeps the message.
func TestFailuresAnswer4xx(t *testing.T) {
	t.Run("downstream unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		p := startProxy(t, addr)
		_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 1}) {
			t.Fatalf("got %v, want 451 4.4.1", err)
		}
		if strings.Contains(se.Message, "refused") || strings.Contains(se.Message, "127.0.0.1") {
			t.Fatalf("reply leaks internals: %q", se.Message)
		}
	})
	t.Run("downstream times out after the final dot", func(t *testing.T) {
		ds := startDownstream(t)
		ds.set(func(d *testDownstream) { d.dataStall = 3 * time.Second })
		p := startProxy(t, ds.addr, withConfig(func(c *Config) {
			c.Timeouts.DownstreamData = settings.Duration(500 * time.Millisecond)
		}))
		_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
			t.Fatalf("got %v, want 451 4.4.2", err)
		}
	})
	t.Run("downstream dies mid-session", func(t *testing.T) {
		ds := startDownstream(t)
		p := startProxy(t, ds.addr)
		r := dialRaw(t, p.addr)
		r.greet()
		r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n")
		r.expect("250 ")
		r.expect("250 ")
		ds.srv.Close()
		r.send("DATA\r\n")
		r.expect("354 ")
		r.send(sampleMessage + ".\r\n")
		r.expect("451 4.4.2 ")
	})
	t.Run("spool error", func(t *testing.T) {
		ds := startDownstream(t)
		dir := t.TempDir()
		p := startProxy(t, ds.addr, withConfig(func(c *Config) {
			c.Spool.Dir = dir
			c.Spool.MemoryThreshold = 10
		}))
		os.Chmod(dir, 0o500)
		if os.Geteuid() == 0 {
			// root ignores directory permissions: remove it instead.
			os.Remove(dir)
		}
		_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
			t.Fatalf("got %v, want 451 4.3.0", err)
		}
		if len(ds.messages()) != 0 {
			t.Fatal("message delivered although it could not be spooled")
		}
	})
	t.Run("stage panics", func(t *testing.T) {
		ds := startDownstream(t)
		boom := stageFunc{"boom", func(context.Context, *pipeline.Transaction) pipeline.Finding { panic("kaboom") }}
		p := startProxy(t, ds.addr, withStages(boom))
		c, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || strings.Contains(se.Message, "kaboom") {
			t.Fatalf("got %v, want a 451 without internals", err)
		}
		// The session goes on: the connection was not dropped.
		if err := c.Noop(); err != nil {
			t.Fatalf("session unusable after a stage panic: %v", err)
		}
		if len(ds.messages()) != 0 {
			t.Fatal("message delivered after a stage panic")
		}
	})
	t.Run("policy panics", func(t *testing.T) {
		ds := startDownstream(t)
		p := startProxy(t, ds.addr, withPolicy(panicPolicy{}))
		_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
		if smtpCode(err) != 451 {
			t.Fatalf("got %v, want 451", err)
		}
	})
	t.Run("quarantine without a store", func(t *testing.T) {
		ds := startDownstream(t)
		p := startProxy(t, ds.addr, withPolicy(fixedPolicy{Action: policy.Quarantine, Rule: "q"}))
		_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
		if smtpCode(err) != 451 {
			t.Fatalf("got %v, want 451", err)
		}
		eventually(t, "downstream RSET", func() bool { ds.mu.Lock(); defer ds.mu.Unlock(); return ds.resets == 1 })
	})
}

type panicPolicy struct{}

func (panicPolicy) Decide(*pipeline.Transaction, []pipeline.Finding) policy.Verdict {
	panic("policy bug")
}

// Verdicts other than deliver never reach the downstream, and their reply
// class always matches the action.
func TestVerdicts(t *testing.T) {
	cases := []struct {
		v    policy.Verdict
		code int
		enh  smtp.EnhancedCode
	}{
		{policy.Verdict{Action: policy.Reject, Rule: "r", Reply: &policy.Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "Listed at bl.example"}}, 554, smtp.EnhancedCode{5, 7, 1}},
		{policy.Verdict{Action: policy.Reject, Rule: "r", Reply: &policy.Reply{Code: 250, Text: "sneaky"}}, 550, smtp.EnhancedCode{5, 7, 1}},
		{policy.Verdict{Action: policy.Tempfail, Rule: "t"}, 451, smtp.EnhancedCode{4, 7, 1}},
		{policy.Verdict{Action: policy.Tempfail, Rule: "t", Reply: &policy.Reply{Code: 550, Text: "wrong class"}}, 451, smtp.EnhancedCode{4, 7, 1}},
		{policy.Verdict{Action: policy.Discard, Rule: "d"}, 250, smtp.EnhancedCode{2, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(string(tc.v.Action), func(t *testing.T) {
			ds := startDownstream(t)
			p := startProxy(t, ds.addr, withPolicy(fixedPolicy(tc.v)))
			_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage)
			code, enh := 250, smtp.EnhancedCode{2, 0, 0}
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				code, enh = se.Code, se.EnhancedCode
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || enh != tc.enh {
				t.Fatalf("got %d %v (%v), want %d %v", code, enh, err, tc.code, tc.enh)
			}
			if len(ds.messages()) != 0 {
				t.Fatal("message reached the downstream")
			}
			eventually(t, "downstream RSET", func() bool { ds.mu.Lock(); defer ds.mu.Unlock(); return ds.resets == 1 })
		})
	}
}

func TestTagAddsHeaders(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withPolicy(fixedPolicy{Action: policy.Tag, Rule: "tag-spam",
		Headers: []policy.Header{{Name: "X-Spam-Flag", Value: "YES"}}}))
	if _, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, sampleMessage); err != nil {
		t.Fatal(err)
	}
	_, rest := stripTrace(t, ds.messages()[0].data)
	if want := "X-Spam-Flag: YES\r\n" + sampleMessage; string(rest) != want {
		t.Fatalf("got %q, want %q", rest, want)
	}
}

// Limits: size, recipients, command lines, command count.
func TestLimits(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withConfig(func(c *Config) {
		c.MaxMessageBytes = 1000
		c.Limits.MaxRecipients = 3
		c.Limits.MaxCommandLine = 600
		c.Limits.MaxCommands = 30
	}))
	r := dialRaw(t, p.addr)
	ehlo := r.greet()
	if !strings.Contains(ehlo, "SIZE 1000") {
		t.Fatalf("SIZE not advertised: %s", ehlo)
	}
	r.send("MAIL FROM:<a@example.test> SIZE=1001\r\n")
	r.expect("552 5.3.4 ")

	r.send("MAIL FROM:<a@example.test>\r\n")
	r.expect("250 ")
	for i := 0; i < 3; i++ {
		r.send("RCPT TO:<b@example.test>\r\n")
		r.expect("250 ")
	}
	r.send("RCPT TO:<c@example.test>\r\n")
	r.expect("452 4.5.3 ")
	r.send("DATA\r\n")
	r.expect("354 ")
	r.send("Subject: big\r\n\r\n" + strings.Repeat("x", 1000) + "\r\n.\r\n")
	r.expect("552 5.3.4 ")
	if len(ds.messages()) != 0 {
		t.Fatal("oversized message delivered")
	}
	// One byte under the limit passes.
	r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	r.expect("250 ")
	r.expect("250 ")
	r.expect("354 ")
	body := "Subject: fits\r\n\r\n"
	body += strings.Repeat("y", 1000-len(body)-2) + "\r\n"
	r.send(body + ".\r\n")
	r.expect("250 ")

	r.send("NOOP " + strings.Repeat("z", 700) + "\r\n")
	r.expect("500 5.5.2 ")
	r.send("NOOP\r\n")
	r.expect("250 ")
	for i := 0; i < 30; i++ {
		r.send("NOOP\r\n")
		got := r.reply()
		if strings.HasPrefix(got, "421 4.7.0") {
			return
		}
	}
	t.Fatal("max_commands not enforced")
}

// The SMTP smuggling sequences of the 2023 research never end the message
// early and never reach the downstream; the session stays usable.
func TestSmugglingSequencesRejected(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	seqs := map[string]string{
		`\n.\n`:       "\n.\n",
		`\n.\r\n`:     "\n.\r\n",
		`\r.\r`:       "\r.\r",
		`\r\n.\r`:     "\r\n.\r",
		`\r.\n`:       "\r.\n",
		`\r\n\0.\r\n`: "\r\n\x00.\r\n",
		`bare LF`:     "line\nline",
		`bare CR end`: "\r",
	}
	for name, seq := range seqs {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, p.addr)
			r.greet()
			r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
			r.expect("250 ")
			r.expect("250 ")
			r.expect("354 ")
			smuggled := "MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
			r.send("Subject: outer\r\n\r\nbody" + seq + smuggled + "\r\n.\r\n")
			got := r.expect("550 ")
			if !strings.Contains(got, "5.5.2") && !strings.Contains(got, "5.6.0") {
				t.Fatalf("reply %q", got)
			}
			r.send("NOOP\r\n")
			r.expect("250 ")
			if n := len(ds.messages()); n != 0 {
				t.Fatalf("%d messages reached the downstream", n)
			}
		})
	}
}

// CHUNKING: BDAT content is checked the same way and forwarded with DATA.
func TestBDAT(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	r := dialRaw(t, p.addr)
	r.greet()
	part1 := "Subject: chunks\r\n\r\nXFORWARD ADDR=6.6.6.6\r\nMAIL FROM:<x@y>\r\n"
	part2 := ".dot line\r\nend\r\n"
	r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n")
	r.expect("250 ")
	r.expect("250 ")
	r.send("BDAT " + strconv.Itoa(len(part1)) + "\r\n" + part1)
	r.expect("250 ")
	r.send("BDAT " + strconv.Itoa(len(part2)) + " LAST\r\n" + part2)
	r.expect("250 ")
	m := ds.messages()
	if len(m) != 1 {
		t.Fatalf("%d messages", len(m))
	}
	if _, rest := stripTrace(t, m[0].data); string(rest) != part1+part2 {
		t.Fatalf("got %q", rest)
	}
	// A bare LF inside a chunk is refused like in DATA.
	r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n")
	r.expect("250 ")
	r.expect("250 ")
	bad := "Subject: x\r\n\r\nbare\nlf\r\n"
	r.send("BDAT " + strconv.Itoa(len(bad)) + " LAST\r\n" + bad)
	r.expect("550 5.5.2 ")
	// A chunk refused by go-smtp (no transaction) is still consumed as data.
	r.send("BDAT 10 LAST\r\nNOOP\r\nNOOP")
	r.expect("503 5.5.1 ") // RFC 5321 §4.1.4: bad sequence of commands
	r.send("NOOP\r\n")
	r.expect("250 ")
	if len(ds.messages()) != 1 {
		t.Fatal("refused chunk delivered")
	}
}

// A client that disconnects mid-DATA delivers nothing.
func TestClientDisconnectMidData(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	r := dialRaw(t, p.addr)
	r.greet()
	r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	r.expect("250 ")
	r.expect("250 ")
	r.expect("354 ")
	r.send("Subject: half\r\n\r\nhalf a message\r\n")
	r.c.Close()
	eventually(t, "summary line", func() bool { return p.logs.FilterMessage("message not received completely").Len() == 1 })
	if len(ds.messages()) != 0 {
		t.Fatal("partial message delivered")
	}
}

// One downstream connection serves many messages of a session, and a dead
// one is replaced without the client noticing.
func TestDownstreamReuseAndReconnect(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	c, err := smtp.Dial(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func() {
		t.Helper()
		if _, err := transact(c, "a@example.test", []string{"b@example.test"}, sampleMessage); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		send()
	}
	ds.mu.Lock()
	conns := ds.conns
	ds.mu.Unlock()
	if conns != 1 {
		t.Fatalf("%d downstream sessions for 3 messages, want 1", conns)
	}
	// Kill the downstream's side of the connection; the next message must
	// still go through on a new one.
	ds.srv.Close()
	ds2 := restartDownstreamOn(t, ds)
	send()
	if len(ds2.messages()) != 1 {
		t.Fatal("message after downstream restart not delivered")
	}
}

func restartDownstreamOn(t *testing.T, old *testDownstream) *testDownstream {
	t.Helper()
	var ln net.Listener
	var err error
	eventually(t, "port free", func() bool { ln, err = net.Listen("tcp", old.addr); return err == nil })
	ln.Close()
	d := startDownstreamAt(t, old.addr)
	return d
}

func TestAllowedClients(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withConfig(func(c *Config) {
		c.AllowedClients = settings.Prefixes{mustPrefix("10.0.0.0/8")}
	}))
	r := dialRaw(t, p.addr)
	r.expect("554 5.7.1 ")
	if len(p.logs.FilterMessage("connection refused: client not in allowed_clients").All()) != 1 {
		t.Fatal("refusal not logged")
	}
}

func mustPrefix(s string) settings.Prefix {
	p, err := settings.ParsePrefix(s)
	if err != nil {
		panic(err)
	}
	return settings.Prefix{Prefix: p}
}

func TestMaxSessions(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withConfig(func(c *Config) { c.Limits.MaxSessions = 2 }))
	a, b := dialRaw(t, p.addr), dialRaw(t, p.addr)
	a.expect("220 ")
	b.expect("220 ")
	c := dialRaw(t, p.addr)
	c.expect("421 4.3.2 ")
	a.send("QUIT\r\n")
	a.expect("221 ")
	eventually(t, "a slot", func() bool { return p.srv.Sessions() < 2 })
	d := dialRaw(t, p.addr)
	d.expect("220 ")
}

// SIGTERM drains: idle clients hear 421 at once, a transaction in progress
// finishes and is delivered.
func TestShutdownDrains(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	idle := dialRaw(t, p.addr)
	idle.greet()
	busy := dialRaw(t, p.addr)
	busy.greet()
	busy.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	busy.expect("250 ")
	busy.expect("250 ")
	busy.expect("354 ")
	busy.send("Subject: in flight\r\n\r\n")

	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- p.srv.Shutdown(ctx)
	}()
	idle.expect("421 4.3.2 ")
	if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		// The listener may still be closing: then the greeting is a 421.
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := c.Read(buf)
		c.Close()
		if n > 0 && !bytes.HasPrefix(buf[:n], []byte("421")) {
			t.Fatalf("new connection during drain got %q", buf[:n])
		}
	}
	busy.send("body\r\n.\r\n")
	busy.expect("250 ")
	busy.send("NOOP\r\n")
	busy.expect("421 4.3.2 ")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(ds.messages()) != 1 {
		t.Fatal("in-flight message lost during shutdown")
	}
}

func TestReloadAppliesToNewSessions(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	old := dialRaw(t, p.addr)
	old.greet()
	cfg := testConfig(ds.addr)
	cfg.AllowedClients = settings.Prefixes{mustPrefix("10.0.0.0/8")}
	cfg.MaxMessageBytes = 1
	if warn := p.srv.Reload(&Runtime{Config: cfg}); len(warn) != 1 || warn[0] != "max_message_bytes" {
		t.Fatalf("restart-only keys: %v", warn)
	}
	dialRaw(t, p.addr).expect("554 ")
	// The session that started before the reload keeps its settings.
	old.send("NOOP\r\n")
	old.expect("250 ")
}

func TestTagSubjectPrefix(t *testing.T) {
	cases := map[string]string{
		"Subject: hello\r\nFrom: a\r\n\r\nbody\r\n":        "Subject: [SPAM] hello\r\nFrom: a\r\n\r\nbody\r\n",
		"From: a\r\nsubject:\thello\r\n\r\nSubject: b\r\n": "From: a\r\nSubject: [SPAM] hello\r\n\r\nSubject: b\r\n",
		"From: a\r\n\r\nbody\r\n":                          "From: a\r\nSubject: [SPAM]\r\n\r\nbody\r\n",
	}
	for in, want := range cases {
		ds := startDownstream(t)
		p := startProxy(t, ds.addr, withPolicy(fixedPolicy{Action: policy.Tag, Rule: "t", SubjectPrefix: "[SPAM]",
			Headers: []policy.Header{{Name: "X-Spam", Value: "yes"}}}))
		if _, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, in); err != nil {
			t.Fatal(err)
		}
		_, rest := stripTrace(t, ds.messages()[0].data)
		if string(rest) != "X-Spam: yes\r\n"+want {
			t.Errorf("in %q: got %q", in, rest)
		}
	}
}

// max_message_bytes needs a restart: after a reload that changes it, the
// SIZE advertised and the limit enforced both stay the start's value.
func TestMaxMessageBytesKeepsItsStartValue(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	cfg := testConfig(ds.addr)
	cfg.MaxMessageBytes = 10
	p.srv.Reload(&Runtime{Config: cfg})
	r := dialRaw(t, p.addr)
	if ehlo := r.greet(); !strings.Contains(ehlo, "SIZE 52428800") {
		t.Fatalf("SIZE changed without a restart:\n%s", ehlo)
	}
	r.send("MAIL FROM:<a@example.test> SIZE=100\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	r.expect("250 ")
	r.expect("250 ")
	r.expect("354 ")
	r.send(sampleMessage + ".\r\n")
	r.expect("250 ")
}
