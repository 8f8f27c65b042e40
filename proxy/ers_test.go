package proxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/reputation"
)

// A DNS server that never answers delays only the message whose ERS lookup
// waits on it, and only for ERS's budget: other sessions' greeting, EHLO,
// MAIL, RCPT and even their own messages go on meanwhile.
func TestBlackHoleDNSDelaysOnlyTheMessage(t *testing.T) {
	hole, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	client, err := reputation.NewDNSClient(reputation.DNSConfig{Servers: []string{hole.LocalAddr().String()}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ers, err := reputation.NewERS(reputation.ERSConfig{
		Zones: []reputation.Zone{{Name: "bl.example.test"}}, Client: client,
		Budget: 3 * time.Second, RecheckInterval: time.Minute, SkipStartupCheck: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ers.Close()
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withStages(ers))

	a := dialRaw(t, p.addr)
	a.greet()
	a.send("XFORWARD ADDR=192.0.2.1\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	a.expect("250 ")
	a.expect("250 ")
	a.expect("250 ")
	a.expect("354 ")
	a.send("Subject: waits for ERS\r\n\r\nx\r\n.\r\n")
	aDone := make(chan string, 1)
	go func() { aDone <- a.reply() }()

	// A second session, whose ERS lookup also hangs, still gets every reply
	// up to and including its own 354 while the first message waits.
	b := dialRaw(t, p.addr)
	b.greet()
	b.send("XFORWARD ADDR=192.0.2.2\r\nMAIL FROM:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
		b.expect(want)
	}
	select {
	case r := <-aDone:
		t.Fatalf("the first message finished (%q) before the second session got through its envelope", r)
	default:
	}
	// The first message is delivered with ERS skipped once its budget ends.
	select {
	case r := <-aDone:
		if !strings.HasPrefix(r, "250 ") {
			t.Fatalf("first message: %q", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("first message never answered")
	}
	if !strings.Contains(string(ds.messages()[0].data), "ers=skipped") {
		t.Fatalf("trace: %q", ds.messages()[0].data[:120])
	}
}
