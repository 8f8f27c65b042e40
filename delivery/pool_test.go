package delivery

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// scriptedDownstream is an in-process smtpd for the connection cache's
// protocol edges: it answers like Postfix's re-injection smtpd (PIPELINING,
// XFORWARD) and records every command line per connection; rset decides
// the reply to RSET ("" for none: the server hangs, reading nothing more).
type scriptedDownstream struct {
	t    *testing.T
	addr string

	mu    sync.Mutex
	conns []*scriptedConn
	rset  string
	data  string // reply after the final dot
}

type scriptedConn struct {
	nc    net.Conn
	mu    sync.Mutex
	lines []string
	done  chan struct{} // closed when the connection ended
}

func (c *scriptedConn) commands() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

func startScripted(t *testing.T) *scriptedDownstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &scriptedDownstream{t: t, addr: ln.Addr().String(), rset: "250 2.0.0 Ok", data: "250 2.0.0 Ok: queued as ABC123"}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		d.mu.Lock()
		for _, c := range d.conns {
			c.nc.Close()
		}
		d.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := &scriptedConn{nc: nc, done: make(chan struct{})}
			d.mu.Lock()
			d.conns = append(d.conns, c)
			d.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(c.done)
				defer nc.Close()
				d.serve(c)
			}()
		}
	}()
	return d
}

func (d *scriptedDownstream) set(fn func(*scriptedDownstream)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

func (d *scriptedDownstream) connections() []*scriptedConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*scriptedConn(nil), d.conns...)
}

func (d *scriptedDownstream) serve(c *scriptedConn) {
	br := bufio.NewReader(c.nc)
	w := func(s string) { c.nc.Write([]byte(s + "\r\n")) }
	w("220 downstream.test ESMTP")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		c.mu.Lock()
		c.lines = append(c.lines, line)
		c.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			w("250-downstream.test\r\n250-PIPELINING\r\n250-XFORWARD NAME ADDR PROTO HELO\r\n250 8BITMIME")
		case "RSET":
			d.mu.Lock()
			r := d.rset
			d.mu.Unlock()
			if r == "" {
				io.Copy(io.Discard, br) // hang, reading on, until the client goes
				return
			}
			w(r)
		case "DATA":
			w("354 go ahead")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			d.mu.Lock()
			r := d.data
			d.mu.Unlock()
			w(r)
		case "QUIT":
			w("221 2.0.0 Bye")
			return
		default:
			w("250 2.0.0 Ok")
		}
	}
}

func (d *scriptedDownstream) dialOptions() DialOptions {
	return DialOptions{Addr: d.addr, Hostname: "foxproxy.test", ConnectTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
}

// transaction sends one message for the client x names on c.
func transaction(t *testing.T, c *Conn, x Xforward) error {
	t.Helper()
	if err := c.Mail("a@example.test", &smtp.MailOptions{}, x); err != nil {
		return err
	}
	if err := c.Rcpt("b@example.test", &smtp.RcptOptions{}); err != nil {
		return err
	}
	_, err := c.Data([]byte("X-Test: 1\r\n"), strings.NewReader("Subject: s\r\n\r\nbody\r\n"), time.Now().Add(5*time.Second))
	return err
}

// verbs returns the command lines (the server records no content) with
// MAIL and RCPT shortened to their verb.
func verbs(lines []string) string {
	var out []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "MAIL "), strings.HasPrefix(l, "RCPT "):
			out = append(out, l[:4])
		default:
			out = append(out, l)
		}
	}
	return strings.Join(out, " | ")
}

// A connection goes back after a clean transaction and carries the next
// message, of another sender's client: RSET first, then that client's own
// XFORWARD, then the envelope: nothing of the first message's XFORWARD is
// left for the downstream to confuse with the second's.
func TestPoolReusesAfterCleanTransactionWithRSETAndOwnXforward(t *testing.T) {
	d := startScripted(t)
	p := NewPool(4, time.Minute)
	defer p.Close()
	ctx := context.Background()
	for i, addr := range []string{"192.0.2.1", "192.0.2.2"} {
		c, reused, err := p.Get(ctx, d.dialOptions())
		if err != nil {
			t.Fatal(err)
		}
		if reused != (i == 1) {
			t.Fatalf("message %d: reused = %v", i, reused)
		}
		if err := transaction(t, c, Xforward{Name: "client" + addr, Addr: addr}); err != nil {
			t.Fatal(err)
		}
		p.Put(c)
	}
	conns := d.connections()
	if len(conns) != 1 {
		t.Fatalf("the downstream saw %d connections, want 1", len(conns))
	}
	got := verbs(conns[0].commands())
	want := "EHLO foxproxy.test | XFORWARD NAME=client192.0.2.1 ADDR=192.0.2.1 | MAIL | RCPT | DATA" +
		" | RSET | XFORWARD NAME=client192.0.2.2 ADDR=192.0.2.2 | MAIL | RCPT | DATA"
	if got != want {
		t.Fatalf("commands on the one connection:\n got %s\nwant %s", got, want)
	}
	if s := p.Stats(); s.Dials != 1 || s.Reuses != 1 || s.Discards != 0 {
		t.Fatalf("stats %+v, want 1 dial, 1 reuse", s)
	}
}

// A cached connection that the downstream closed while it was idle (here
// the way Postfix's smtpd does at smtpd_timeout: 421, then close) is found
// out before anything is sent on it, and Get hands out a new one.
func TestPoolNeverUsesConnectionTheDownstreamClosed(t *testing.T) {
	d := startScripted(t)
	p := NewPool(4, time.Minute)
	defer p.Close()
	ctx := context.Background()
	c, _, err := p.Get(ctx, d.dialOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := transaction(t, c, Xforward{Addr: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	first := d.connections()[0]
	first.nc.Write([]byte("421 4.4.2 downstream.test Error: timeout exceeded\r\n"))
	first.nc.Close()
	<-first.done

	c, reused, err := p.Get(ctx, d.dialOptions())
	if err != nil {
		t.Fatal(err)
	}
	if reused {
		t.Fatal("Get handed out the connection the downstream closed")
	}
	if err := transaction(t, c, Xforward{Addr: "192.0.2.2"}); err != nil {
		t.Fatalf("the message failed on the replacement connection: %v", err)
	}
	p.Put(c)
	if n := len(d.connections()); n != 2 {
		t.Fatalf("the downstream saw %d connections, want 2", n)
	}
	if s := p.Stats(); s.Dials != 2 || s.Reuses != 0 || s.Discards != 1 {
		t.Fatalf("stats %+v, want 2 dials, 0 reuses, 1 discard", s)
	}
}

// A reply to RSET other than 250, or none within the bound, fails the
// reused connection's MAIL with an error that is no SMTP reply (so the
// caller dials afresh) and breaks it: its transaction never reaches DATA,
// and the message goes over a new connection.
func TestPoolRSETRefusedOrUnansweredBreaksTheConnection(t *testing.T) {
	for _, tc := range []struct{ name, reply string }{
		{"wrong kind", "452 4.3.1 Insufficient system storage"},
		{"no reply", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startScripted(t)
			p := NewPool(4, time.Minute)
			defer p.Close()
			o := d.dialOptions()
			o.CommandTimeout = 300 * time.Millisecond // bounds the RSET reply too
			c, _, err := p.Get(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if err := transaction(t, c, Xforward{Addr: "192.0.2.1"}); err != nil {
				t.Fatal(err)
			}
			p.Put(c)
			d.set(func(d *scriptedDownstream) { d.rset = tc.reply })
			c, reused, err := p.Get(context.Background(), o)
			if err != nil || !reused {
				t.Fatalf("Get: reused %v, %v; want the idle connection", reused, err)
			}
			err = transaction(t, c, Xforward{Addr: "192.0.2.2"})
			var se *smtp.SMTPError
			if err == nil || errors.As(err, &se) || !c.Broken() {
				t.Fatalf("transaction after a failed RSET: %v (broken %v); want a connection error", err, c.Broken())
			}
			p.Put(c)
			if n := p.Idle(); n != 0 {
				t.Fatalf("%d idle connections kept after the failed RSET", n)
			}
			first := d.connections()[0]
			select {
			case <-first.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the broken connection was not closed")
			}
			if n := strings.Count(verbs(first.commands()), "DATA"); n != 1 {
				t.Fatalf("the connection carried %d DATAs, want only the first message's: %q", n, first.commands())
			}

			d.set(func(d *scriptedDownstream) { d.rset = "250 2.0.0 Ok" })
			c, err = p.Dial(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := transaction(t, c, Xforward{Addr: "192.0.2.2"}); err != nil {
				t.Fatalf("the message failed on the new connection: %v", err)
			}
		})
	}
}

// Only a transaction that ended with a positive reply gives its connection
// back: after a 4xx to the final dot, or one left open, it is closed.
func TestPoolKeepsOnlyCleanConnections(t *testing.T) {
	d := startScripted(t)
	p := NewPool(4, time.Minute)
	defer p.Close()
	o := d.dialOptions()

	d.set(func(d *scriptedDownstream) { d.data = "451 4.3.0 Error: queue file write error" })
	c, _, err := p.Get(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := transaction(t, c, Xforward{}); err == nil {
		t.Fatal("the 451 after the final dot was not an error")
	}
	p.Put(c)

	c, _, err = p.Get(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.test", &smtp.MailOptions{}, Xforward{}); err != nil {
		t.Fatal(err)
	}
	p.Put(c) // still in its transaction
	if n := p.Idle(); n != 0 {
		t.Fatalf("%d idle connections kept, want 0", n)
	}
	for i, sc := range d.connections() {
		select {
		case <-sc.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d was not closed", i)
		}
	}

	// A transaction abandoned with RSET (a discard verdict) is clean.
	c, _, err = p.Get(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.test", &smtp.MailOptions{}, Xforward{}); err != nil {
		t.Fatal(err)
	}
	c.Reset()
	p.Put(c)
	if n := p.Idle(); n != 1 {
		t.Fatalf("%d idle connections after a reset transaction, want 1", n)
	}
}

// At most maxIdle are kept (the oldest go), none longer than the idle bound,
// and none for a downstream other than the one asked for.
func TestPoolBoundsIdleConnections(t *testing.T) {
	d := startScripted(t)
	p := NewPool(2, 300*time.Millisecond)
	defer p.Close()
	o := d.dialOptions()
	var cs []*Conn
	for range 3 {
		c, _, err := p.Get(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		p.Put(c)
	}
	if n := p.Idle(); n != 2 {
		t.Fatalf("%d idle, want 2", n)
	}
	select {
	case <-d.connections()[0].done:
	case <-time.After(10 * time.Second):
		t.Fatal("the oldest connection beyond downstream_max_idle was not closed")
	}

	other := o
	other.Hostname = "reloaded.test"
	c, reused, err := p.Get(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	if reused {
		t.Fatal("a connection dialled with other options was reused")
	}
	c.Close()

	deadline := time.Now().Add(10 * time.Second)
	for p.Idle() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections still kept long after downstream_idle", p.Idle())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, sc := range d.connections() {
		select {
		case <-sc.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d still open", i)
		}
		if cmds := sc.commands(); cmds[len(cmds)-1] != "QUIT" {
			t.Fatalf("connection %d ended without QUIT: %q", i, cmds)
		}
	}
}
