package proxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/settings"
)

func TestParseXforward(t *testing.T) {
	cases := []struct {
		arg     string
		want    Xforward
		wantErr string
	}{
		{"NAME=mail.example.com ADDR=192.0.2.7 PORT=40123", Xforward{Name: "mail.example.com", Addr: "192.0.2.7", Port: "40123"}, ""},
		{"proto=ESMTP helo=client+2Bx.example ident=4ABC source=REMOTE", Xforward{Proto: "ESMTP", Helo: "client+x.example", Ident: "4ABC", Source: "REMOTE"}, ""},
		{"ADDR=IPV6:2001:db8::7", Xforward{Addr: "2001:db8::7"}, ""},
		{"NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL]", Xforward{Name: "[UNAVAILABLE]", Addr: "[TEMPUNAVAIL]"}, ""},
		{"", Xforward{}, "Syntax: XFORWARD attribute=value"},
		{"ADDR", Xforward{}, "Syntax"},
		{"COLOR=red", Xforward{}, "Bad XFORWARD attribute name: COLOR"},
		{"ADDR=not-an-ip", Xforward{}, "is not an IP address"},
		{"PORT=99999", Xforward{}, "is not a port number"},
		{"HELO=a+2", Xforward{}, "invalid xtext"},
		{"HELO=a+0ab", Xforward{}, "invalid xtext"},
		{"HELO=" + strings.Repeat("h", 300), Xforward{}, "longer than 255"},
		{"HELO=a+0Db", Xforward{}, "control character"},
	}
	for _, tc := range cases {
		var x Xforward
		err := parseXforward(tc.arg, 255, &x)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.arg, err, tc.wantErr)
			}
			if !x.IsZero() {
				t.Errorf("%q: a refused command changed the attributes: %+v", tc.arg, x)
			}
			continue
		}
		if err != nil || x != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.arg, x, err, tc.want)
		}
	}
}

func TestXforwardClientAddr(t *testing.T) {
	if a, ok := (Xforward{Addr: "::ffff:192.0.2.1"}).ClientAddr(); !ok || a != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("mapped address: %v %v", a, ok)
	}
	if _, ok := (Xforward{Addr: "[UNAVAILABLE]"}).ClientAddr(); ok {
		t.Fatal("[UNAVAILABLE] is not an address")
	}
}

// Postfix pipelines XFORWARD, XFORWARD, MAIL, RCPT and DATA in one write.
// The replies come in order, the attributes reach the downstream, and a body
// line that looks like XFORWARD stays body.
func TestXforwardPipelinedFromTrustedClient(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	r := dialRaw(t, p.addr)
	ehlo := r.greet()
	if !strings.Contains(ehlo, "250-XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE") {
		t.Fatalf("EHLO to a trusted client lacks XFORWARD:\n%s", ehlo)
	}
	body := "Received: from x\r\nSubject: xf\r\n\r\nXFORWARD ADDR=6.6.6.6\r\nxforward name=evil\r\n"
	r.send("XFORWARD NAME=mail.example.com ADDR=192.0.2.7 PORT=40123\r\n" +
		"XFORWARD PROTO=ESMTP HELO=client.example IDENT=4ABCDE SOURCE=REMOTE\r\n" +
		"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	r.expect("250 2.0.0 Ok")
	r.expect("250 2.0.0 Ok")
	r.expect("250 ")
	r.expect("250 ")
	r.expect("354 ")
	r.send(body + ".\r\n")
	r.expect("250 ")

	m := ds.messages()[0]
	want := Xforward{Name: "mail.example.com", Addr: "192.0.2.7", Port: "40123", Proto: "ESMTP", Helo: "client.example", Ident: "4ABCDE", Source: "REMOTE"}
	if m.xfwd != want {
		t.Fatalf("downstream got XFORWARD %+v, want %+v", m.xfwd, want)
	}
	if _, rest := stripTrace(t, m.data); string(rest) != body {
		t.Fatalf("body changed: %q", rest)
	}
	f := p.logs.FilterMessage("message").All()[0].ContextMap()
	if f["client"] != "192.0.2.7" || f["client_source"] != "xforward" || f["queue_id"] != "4ABCDE" {
		t.Fatalf("summary: %v", f)
	}

	// The attributes lasted one transaction: the next message is from the peer.
	r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	r.expect("250 ")
	r.expect("250 ")
	r.expect("354 ")
	r.send("Subject: second\r\n\r\nx\r\n.\r\n")
	r.expect("250 ")
	if x := ds.messages()[1].xfwd; x.Addr != "127.0.0.1" || x.Name != "[UNAVAILABLE]" {
		t.Fatalf("second message forwarded %+v", x)
	}

	// XFORWARD inside a transaction is refused, like Postfix does.
	r.send("MAIL FROM:<a@example.test>\r\nXFORWARD ADDR=192.0.2.9\r\n")
	r.expect("250 ")
	r.expect("503 5.5.1 ")
	r.send("RSET\r\nXFORWARD ADDR=192.0.2.9 COLOR=red\r\n")
	r.expect("250 ")
	r.expect("501 5.5.4 ")
}

func TestXforwardFromUntrustedClient(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withConfig(func(c *Config) {
		c.XforwardClients = settings.Prefixes{mustPrefix("10.0.0.0/8")}
	}))
	r := dialRaw(t, p.addr)
	if ehlo := r.greet(); strings.Contains(ehlo, "XFORWARD") {
		t.Fatalf("XFORWARD offered to an untrusted client:\n%s", ehlo)
	}
	r.send("XFORWARD ADDR=192.0.2.7\r\n")
	r.expect("550 5.7.0 ")
	r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	r.expect("250 ")
	r.expect("250 ")
	r.expect("354 ")
	// An untrusted client's Received header is not believed either.
	r.send("Received: from x (evil [192.0.2.66])\r\n\tby mx (Postfix) with ESMTP id FAKE\r\n\r\nx\r\n.\r\n")
	r.expect("250 ")
	if x := ds.messages()[0].xfwd; x.Addr != "127.0.0.1" {
		t.Fatalf("downstream told client %q", x.Addr)
	}
	f := p.logs.FilterMessage("message").All()[0].ContextMap()
	if f["client"] != "127.0.0.1" || f["client_source"] != "peer" || f["queue_id"] != "" {
		t.Fatalf("summary: %v", f)
	}
}

// Without XFORWARD, the client and queue ID come from the Received header
// the trusted local Postfix prepended.
func TestClientFromReceivedHeader(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	msg := "Received: from helo.example (client.example [IPv6:2001:db8::25])\r\n" +
		"\tby mx.example.test (Postfix) with ESMTP id 4XyZ123\r\n\tfor <b@example.test>; Fri, 27 Nov 2026 14:00:00 +0000 (UTC)\r\n" +
		"Subject: r\r\n\r\nbody\r\n"
	if _, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	f := p.logs.FilterMessage("message").All()[0].ContextMap()
	if f["client"] != "2001:db8::25" || f["client_source"] != "received" || f["queue_id"] != "4XyZ123" {
		t.Fatalf("summary: %v", f)
	}
}

func FuzzParseXforward(f *testing.F) {
	for _, s := range []string{"NAME=a ADDR=192.0.2.1 PORT=1", "ADDR=IPV6:::1", "HELO=+41+42", "IDENT=[UNAVAILABLE]", "x=y", "="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		var x Xforward
		if err := parseXforward(arg, 255, &x); err != nil {
			return
		}
		// Whatever was accepted must survive the trip to the downstream.
		all := map[string]bool{"NAME": true, "ADDR": true, "PORT": true, "PROTO": true, "HELO": true, "IDENT": true, "SOURCE": true}
		var back Xforward
		for _, cmd := range delivery.XforwardCommands(x, all) {
			if strings.ContainsAny(cmd, "\r\n") {
				t.Fatalf("command with a line break: %q", cmd)
			}
			if err := parseXforward(strings.TrimPrefix(cmd, "XFORWARD "), 255, &back); err != nil {
				t.Fatalf("re-parse of %q: %v", cmd, err)
			}
		}
		if back != x {
			t.Fatalf("round trip: %+v != %+v", back, x)
		}
	})
}

func TestTopReceived(t *testing.T) {
	cases := map[string]string{
		"Received: from a (b [192.0.2.1])\r\n\tby mx (Postfix) with ESMTP id X1\r\nReceived: from older\r\n\r\nbody": "from a (b [192.0.2.1]) \tby mx (Postfix) with ESMTP id X1",
		"Subject: s\r\nreceived: from x\r\n\r\n":                                                "from x",
		"Subject: s\r\n\r\nReceived: from body\r\n":                                             "",
		"X-Long: " + strings.Repeat("y", 5000) + "\r\nReceived: from after-a-long-line\r\n\r\n": "from after-a-long-line",
	}
	for in, want := range cases {
		if got := topReceived(strings.NewReader(in), 1<<20); got != want {
			t.Errorf("topReceived(%.40q...) = %q, want %q", in, got, want)
		}
	}
}
