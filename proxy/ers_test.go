package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/pipeline"
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

// TestCloseDuringDataLogsOutAfterTheHandler: go-smtp's Server.Close calls
// Logout from its own goroutine while Data still runs (a drain that ran out
// of time). Logout must not touch the session under Data's feet (the race
// detector checks), and the session must still be logged out, its runtime
// given back, once Data returns.
func TestCloseDuringDataLogsOutAfterTheHandler(t *testing.T) {
	inStage := make(chan struct{})
	release := make(chan struct{})
	stage := stageFunc{name: "slow", fn: func(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
		close(inStage)
		<-release
		return pipeline.Finding{Stage: "slow", Status: pipeline.Clean}
	}}
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, withStages(stage))
	a := dialRaw(t, p.addr)
	a.greet()
	a.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	a.expect("250 ")
	a.expect("250 ")
	a.expect("354 ")
	a.send("Subject: s\r\n\r\nx\r\n.\r\n")
	<-inStage
	closed := make(chan error, 1)
	go func() { closed <- p.srv.Close() }()
	select {
	case <-closed: // Close does not wait for Data
	case <-time.After(10 * time.Second):
		t.Fatal("Server.Close waited for the message in progress")
	}
	if n := p.srv.runtimeUsers(); n != 1 {
		t.Fatalf("runtime users while Data runs: %d, want 1", n)
	}
	close(release)
	eventually(t, "the session logged out after Data", func() bool { return p.srv.runtimeUsers() == 0 })
}
