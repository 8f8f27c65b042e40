package proxy

import (
	"fmt"
	"testing"
)

// sessionWithOneMessage is one whole inbound session, as Postfix's smtp
// client opens one per message when its own cache has nothing: the client
// is named with XFORWARD, and the message must be accepted.
func sessionWithOneMessage(t *testing.T, addr, client string) {
	t.Helper()
	r := dialRaw(t, addr)
	r.greet()
	r.send("XFORWARD NAME=" + client + ".example ADDR=" + client + "\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
		r.expect(want)
	}
	r.send("Subject: from " + client + "\r\n\r\nhello\r\n.\r\n")
	r.expect("250 ")
	r.send("QUIT\r\n")
	r.expect("221 ")
	r.c.Close()
}

// Inbound sessions one after another share one downstream connection, and
// each message reaches the downstream with its own client's XFORWARD.
func TestSessionsShareDownstreamConnections(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	const n = 6
	for i := range n {
		sessionWithOneMessage(t, p.addr, fmt.Sprintf("192.0.2.%d", i+1))
		// The connection goes back after the reply to the final dot;
		// wait for it, so the next session finds it (not a timing claim).
		eventually(t, "connection back in the cache", func() bool { return p.srv.pool.Idle() == 1 })
	}
	ds.mu.Lock()
	conns := ds.conns
	ds.mu.Unlock()
	if conns != 1 {
		t.Fatalf("%d downstream connections for %d sessions, want 1", conns, n)
	}
	msgs := ds.messages()
	if len(msgs) != n {
		t.Fatalf("%d messages delivered, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		want := fmt.Sprintf("192.0.2.%d", i+1)
		if m.xfwd.Addr != want || m.xfwd.Name != want+".example" {
			t.Errorf("message %d reached the downstream with XFORWARD %+v, want ADDR=%s", i, m.xfwd, want)
		}
	}
	if s := p.srv.DownstreamStats(); s.Dials != 1 || s.Reuses != n-1 {
		t.Fatalf("stats %+v, want 1 dial and %d reuses", s, n-1)
	}
}

// A downstream restart kills the cached connection; the next message
// finds it dead at RSET and goes over a new one: 250 at the first try.
func TestDownstreamRestartCostsTheNextMessageNothing(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	sessionWithOneMessage(t, p.addr, "192.0.2.1")
	eventually(t, "connection back in the cache", func() bool { return p.srv.pool.Idle() == 1 })

	ds.srv.Close()
	ds2 := restartDownstreamOn(t, ds)
	sessionWithOneMessage(t, p.addr, "192.0.2.2") // fails the test on anything but 250
	msgs := ds2.messages()
	if len(msgs) != 1 || msgs[0].xfwd.Addr != "192.0.2.2" {
		t.Fatalf("after the restart the downstream got %+v", msgs)
	}
	if s := p.srv.DownstreamStats(); s.Discards != 1 || s.Dials != 2 || s.Reuses != 0 {
		t.Fatalf("stats %+v, want the dead connection discarded and a new one dialled", s)
	}
}

// downstream_max_idle: 0 keeps no connection: every transaction, even on
// a kept inbound session, connects anew.
func TestDownstreamMaxIdleZeroKeepsNone(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withConfig(func(c *Config) { c.DownstreamMaxIdle = 0 }))
	r := dialRaw(t, p.addr)
	r.greet()
	for i := range 3 {
		r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
		r.expect("250 ")
		r.expect("250 ")
		r.expect("354 ")
		r.send(fmt.Sprintf("Subject: %d\r\n\r\nhello\r\n.\r\n", i))
		r.expect("250 ")
	}
	if n := len(ds.messages()); n != 3 {
		t.Fatalf("%d messages delivered, want 3", n)
	}
	ds.mu.Lock()
	conns := ds.conns
	ds.mu.Unlock()
	if conns != 3 {
		t.Fatalf("%d downstream connections for 3 messages, want 3", conns)
	}
	if n := p.srv.pool.Idle(); n != 0 {
		t.Fatalf("%d idle connections kept with downstream_max_idle 0", n)
	}
}
