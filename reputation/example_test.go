package reputation_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/reputation"
)

// serveList starts a tiny DNS list on 127.0.0.1 that lists 127.0.0.2 (the
// RFC 5782 test point) and 192.0.2.10 as spam, and returns its address.
func serveList() (addr string, stop func()) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	listed := map[string]bool{"2.0.0.127.bl.example.": true, "10.2.0.192.bl.example.": true}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch {
		case !listed[q.Name]:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 300 IN A 127.0.0.2")
			m.Answer = append(m.Answer, rr)
		case q.Qtype == dns.TypeTXT:
			rr, _ := dns.NewRR(q.Name + ` 300 IN TXT "Listed, see https://bl.example/lookup"`)
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	return pc.LocalAddr().String(), func() { srv.Shutdown() }
}

func ExampleLookupIP() {
	server, stop := serveList()
	defer stop()

	client, err := reputation.NewDNSClient(reputation.DNSConfig{Servers: []string{server}})
	if err != nil {
		panic(err)
	}
	defer client.Close()

	zone := reputation.Zone{
		Name:  "bl.example",
		Codes: map[netip.Addr]string{netip.MustParseAddr("127.0.0.2"): "spam"},
		TXT:   true,
	}
	for _, ip := range []string{"192.0.2.10", "192.0.2.11"} {
		res, err := reputation.LookupIP(context.Background(), client, zone, netip.MustParseAddr(ip))
		if err != nil {
			fmt.Println(ip, "error:", err)
			continue
		}
		fmt.Println(res.Query, res.Listed, res.Categories, res.Reason)
	}
	// Output:
	// 10.2.0.192.bl.example true [spam] Listed, see https://bl.example/lookup
	// 11.2.0.192.bl.example false []
}

func ExampleQueryNameIP() {
	for _, ip := range []string{"192.0.2.99", "::ffff:192.0.2.99", "2001:db8:1:2:3:4:567:89ab"} {
		name, _ := reputation.QueryNameIP(netip.MustParseAddr(ip), "bl.example")
		fmt.Println(name)
	}
	// Output:
	// 99.2.0.192.bl.example
	// 99.2.0.192.bl.example
	// b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example
}

func ExampleERS() {
	server, stop := serveList()
	defer stop()

	client, err := reputation.NewDNSClient(reputation.DNSConfig{Servers: []string{server}})
	if err != nil {
		panic(err)
	}
	defer client.Close() // after the stage

	ers, err := reputation.NewERS(reputation.ERSConfig{
		Zones: []reputation.Zone{{
			Name:  "bl.example",
			Codes: map[netip.Addr]string{netip.MustParseAddr("127.0.0.2"): "spam"},
			TXT:   true,
		}},
		Client:          client,
		Budget:          5 * time.Second,
		RecheckInterval: reputation.DefaultRecheckInterval,
	})
	if err != nil {
		panic(err)
	}
	defer ers.Close()

	client192 := netip.MustParseAddr("192.0.2.10")
	ers.PrefetchClient(client192) // at XFORWARD/connect: starts the lookups
	f := ers.Inspect(context.Background(), &pipeline.Transaction{Client: client192})
	fmt.Println(f.Trace(), "|", f.Detail, "|", f.Reason)
	fmt.Println(ers.Health()[0].State)
	// Output:
	// ers=listed(spam) | listed by bl.example: 127.0.0.2 spam | Listed, see https://bl.example/lookup
	// up
}
