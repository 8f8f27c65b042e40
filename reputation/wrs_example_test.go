package reputation_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/reputation"
)

// serveURIList starts a tiny SURBL-style bitmask list on 127.0.0.1: its
// RFC 5782 test point "test" and evil.example (8 + 16: phish and malware).
func serveURIList() (addr string, stop func()) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	listed := map[string]string{"test.uri.example.": "127.0.0.2", "evil.example.uri.example.": "127.0.0.24"}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if a, ok := listed[q.Name]; ok && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 300 IN A " + a)
			m.Answer = append(m.Answer, rr)
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	return pc.LocalAddr().String(), func() { srv.Shutdown() }
}

type message []byte

func (m message) Size() int64     { return int64(len(m)) }
func (m message) Open() io.Reader { return bytes.NewReader(m) }

func ExampleWRS() {
	server, stop := serveURIList()
	defer stop()

	client, err := reputation.NewDNSClient(reputation.DNSConfig{Servers: []string{server}})
	if err != nil {
		panic(err)
	}
	defer client.Close() // after the stage

	wrs, err := reputation.NewWRS(reputation.WRSConfig{
		Zones: []reputation.DNSZone{{
			Name:    "uri.example",
			Bitmask: map[int]string{8: "phish", 16: "malware", 64: "spam"},
		}},
		Client: client,
	})
	if err != nil {
		panic(err)
	}
	defer wrs.Close()

	msg := message("From: a@sender.example\r\nSubject: hi\r\n\r\nLog in at https://secure.evil.example/login now.\r\n")
	f := wrs.Inspect(context.Background(), &pipeline.Transaction{ID: "1", Message: msg})
	fmt.Println(f.Trace(), "|", f.Detail)
	for _, it := range f.Items {
		fmt.Println(it.What, it.Zone, it.Category)
	}
	h := wrs.Health()[0]
	fmt.Println(h.Zone, h.State)
	// Output:
	// wrs=listed(malware,phish) | listed by uri.example; 1 urls
	// evil.example uri.example malware,phish
	// uri.example closed
}
