package integration

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// The connection cache to the re-injection smtpd (downstream_idle,
// downstream_max_idle), through a real Postfix. The test itself is the
// inbound client, speaking to foxproxy as Postfix's smtp client does (EHLO,
// XFORWARD with the original client and queue ID, MAIL, RCPT, DATA), so
// that it chooses how many inbound sessions carry the messages and which
// client each message names.

// inboundSession is one SMTP session to foxproxy.
type inboundSession struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialInbound(t *testing.T, addr string) (*inboundSession, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	s := &inboundSession{t: t, c: c, br: bufio.NewReader(c)}
	if _, err := s.reply(220); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := s.cmd("EHLO postfix.example.test", 250); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// reply reads one (multi-line) reply and wants code.
func (s *inboundSession) reply(code int) (string, error) {
	s.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	var last string
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("reading a reply: %w", err)
		}
		last = strings.TrimRight(line, "\r\n")
		if len(last) < 4 || last[3] == ' ' {
			break
		}
	}
	if !strings.HasPrefix(last, fmt.Sprint(code)) {
		return last, fmt.Errorf("got %q, want %d", last, code)
	}
	return last, nil
}

func (s *inboundSession) cmd(line string, code int) (string, error) {
	s.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return "", err
	}
	return s.reply(code)
}

// queuedAs is the downstream's queue ID in foxproxy's 250, which is the
// re-injection smtpd's own reply.
var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// send sends one message for the original client addr (XFORWARD) and
// returns the re-injection smtpd's queue ID.
func (s *inboundSession) send(addr, ident string) (string, error) {
	for _, step := range []struct {
		line string
		code int
	}{
		{"XFORWARD NAME=client-" + strings.ReplaceAll(addr, ".", "-") + ".example ADDR=" + addr + " PORT=25000", 250},
		{"XFORWARD PROTO=ESMTP HELO=helo.example IDENT=" + ident + " SOURCE=REMOTE", 250},
		{"MAIL FROM:<sender@example.test>", 250},
		{"RCPT TO:<rcpt@example.test>", 250},
		{"DATA", 354},
	} {
		if _, err := s.cmd(step.line, step.code); err != nil {
			return "", fmt.Errorf("%s: %w", step.line, err)
		}
	}
	msg := "Received: from helo.example (client [" + addr + "])\r\n\tby postfix.example.test (Postfix) with ESMTP id " + ident + "\r\n" +
		"From: <sender@example.test>\r\nTo: <rcpt@example.test>\r\nSubject: " + ident + "\r\n\r\nfor " + addr + "\r\n."
	r, err := s.cmd(msg, 250)
	if err != nil {
		return "", fmt.Errorf("end of data: %w", err)
	}
	m := queuedAs.FindStringSubmatch(r)
	if m == nil {
		return "", fmt.Errorf("no queue ID in %q", r)
	}
	return m[1], nil
}

func (s *inboundSession) quit() {
	s.cmd("QUIT", 221)
	s.c.Close()
}

// sent is one message that foxproxy accepted.
type sent struct {
	client, ident, dsID string
}

// foxproxyConnections stops foxproxy, which QUITs its idle connections,
// waits until the re-injection smtpd has logged the end of every
// connection it logged after the maillog offset from, and counts those that
// said EHLO: foxproxy's, not the harness's port probes. Postfix logs each
// connection's end with its command counts ("disconnect from
// localhost[127.0.0.1] ehlo=1 xforward=20 mail=10 ...").
func foxproxyConnections(t *testing.T, pf *harness.Postfix, fp *foxproxy, from int) int {
	t.Helper()
	fp.Stop()
	connect := regexp.MustCompile(`postfix/reinject/smtpd\[\d+\]: connect from`)
	disconnect := regexp.MustCompile(`postfix/reinject/smtpd\[\d+\]: disconnect from \S+( ehlo=)?`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		log := pf.Maillog()
		if from > len(log) {
			t.Fatalf("the maillog shrank below offset %d", from)
		}
		log = log[from:]
		connects, disconnects, withEHLO := 0, 0, 0
		for _, line := range strings.Split(log, "\n") {
			if connect.MatchString(line) {
				connects++
			}
			if m := disconnect.FindStringSubmatch(line); m != nil {
				disconnects++
				if m[1] != "" {
					withEHLO++
				}
			}
		}
		if connects == disconnects {
			return withEHLO
		}
		if time.Now().After(deadline) {
			t.Fatalf("the re-injection smtpd logged %d connects but %d disconnects", connects, disconnects)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOrigClients waits until the re-injection smtpd has logged every
// message, each with the original client its inbound session named.
func checkOrigClients(t *testing.T, pf *harness.Postfix, msgs []sent) {
	t.Helper()
	for _, m := range msgs {
		got := pf.WaitLog(t, m.dsID+`: client=\S+, orig_queue_id=(\S+), orig_client=(\S+)\[([0-9.]+)\]`, 30*time.Second)
		if got[1] != m.ident || got[3] != m.client || got[2] != "client-"+strings.ReplaceAll(m.client, ".", "-")+".example" {
			t.Errorf("%s: re-injection smtpd logged orig_queue_id=%s orig_client=%s[%s], want %s and %s",
				m.dsID, got[1], got[2], got[3], m.ident, m.client)
		}
	}
}

// 200 messages over 20 inbound sessions, at most 4 at a time, reach the
// re-injection smtpd over no more connections than were ever busy at
// once: 4, where a connection per inbound session made 20. Every message
// carries its own original client into the downstream's log.
func TestConnCacheManySessionsFewDownstreamConnections(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	// A long idle bound: the count must not depend on how fast a loaded
	// machine runs the sessions.
	fp := startFoxproxy(t, harness.FreeAddr(t), pf.ReinjectAddr, "downstream_idle: 2m")

	const sessions, perSession, concurrent = 20, 10, 4
	var (
		mu   sync.Mutex
		msgs []sent
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sn := range next {
				s, err := dialInbound(t, fp.Addr)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("session %d: %w", sn, err))
					mu.Unlock()
					continue
				}
				for i := range perSession {
					n := sn*perSession + i
					client := fmt.Sprintf("10.21.%d.%d", n/250, n%250+1)
					ident := fmt.Sprintf("4CACHE%03d", n)
					dsID, err := s.send(client, ident)
					mu.Lock()
					if err != nil {
						errs = append(errs, fmt.Errorf("session %d message %d: %w", sn, i, err))
					} else {
						msgs = append(msgs, sent{client: client, ident: ident, dsID: dsID})
					}
					mu.Unlock()
				}
				s.quit()
			}
		}()
	}
	for sn := range sessions {
		next <- sn
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(msgs) != sessions*perSession {
		t.Fatalf("foxproxy accepted %d messages, want %d", len(msgs), sessions*perSession)
	}
	pf.WaitDelivered(t, harness.BoxRcpt, sessions*perSession, 120*time.Second)
	checkOrigClients(t, pf, msgs)
	connects := foxproxyConnections(t, pf, fp, 0)
	t.Logf("%d messages over %d inbound sessions (%d at a time): %d connections to the re-injection smtpd",
		len(msgs), sessions, concurrent, connects)
	if connects < 1 || connects > concurrent {
		t.Fatalf("the re-injection smtpd logged %d connects for %d messages over %d sessions, want 1 to %d",
			connects, len(msgs), sessions, concurrent)
	}
}

// The re-injection smtpd restarted between messages of open inbound
// sessions: every cached connection is dead, and every message after the
// restart is still accepted at the first try (none deferred by foxproxy),
// delivered once, with its own original client.
func TestConnCacheDownstreamRestartMidRun(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, harness.FreeAddr(t), pf.ReinjectAddr, "downstream_idle: 2m")

	const sessions, perPhase = 4, 5
	ss := make([]*inboundSession, sessions)
	for i := range ss {
		s, err := dialInbound(t, fp.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer s.quit()
		ss[i] = s
	}
	var msgs []sent
	phase := func(p int) {
		t.Helper()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, s := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range perPhase {
					n := p*100 + i*10 + j
					client := fmt.Sprintf("10.22.%d.%d", p, i*10+j+1)
					ident := fmt.Sprintf("4RESTART%03d", n)
					dsID, err := s.send(client, ident)
					mu.Lock()
					if err != nil {
						t.Errorf("phase %d, session %d, message %d: %v", p, i, j, err)
					} else {
						msgs = append(msgs, sent{client: client, ident: ident, dsID: dsID})
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	phase(0)
	if t.Failed() {
		t.FailNow()
	}
	pf.WaitDelivered(t, harness.BoxRcpt, len(msgs), 60*time.Second)

	pf.Stop() // every re-injection smtpd process ends, and its connection with it
	pf.Start()
	restarted := pf.MaillogMark()
	phase(1) // fails the test on any reply but 250, a 4xx included
	if len(msgs) != 2*sessions*perPhase {
		t.Fatalf("%d messages accepted, want %d", len(msgs), 2*sessions*perPhase)
	}
	pf.WaitDelivered(t, harness.BoxRcpt, len(msgs), 60*time.Second)
	checkOrigClients(t, pf, msgs)
	pf.WaitQueueEmpty(t, 30*time.Second)
	if n := len(pf.Delivered(harness.BoxRcpt)); n != len(msgs) {
		t.Fatalf("%d messages delivered, want each of %d once", n, len(msgs))
	}
	if n := strings.Count(fp.Log(), `"downstream failed at`); n != 0 {
		t.Fatalf("foxproxy logged %d downstream failures; log tail:\n%s", n, tail(fp.Log(), 20))
	}
	// After the restart, no more connections than sessions: the dead
	// ones were replaced once each, never retried message by message.
	if n := foxproxyConnections(t, pf, fp, restarted); n < 1 || n > sessions {
		t.Fatalf("%d connections from foxproxy to the re-injection smtpd after the restart, want 1 to %d", n, sessions)
	} else {
		t.Logf("%d connections from foxproxy to the re-injection smtpd after the restart", n)
	}
}
