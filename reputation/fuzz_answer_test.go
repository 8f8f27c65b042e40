package reputation

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// answerSeeds are replies a DNS list sends: listed with a reason, not
// listed with and without an SOA, a CNAME chain, answers that are not
// listings (outside 127/8, Spamhaus' 127.255.255.x), a bitmask list's
// codes. The committed corpus (testdata/fuzz/FuzzDNSAnswer) adds real
// rbldnsd replies.
func answerSeeds(t testing.TB) [][]byte {
	name := "2.0.0.127.bl.example.test."
	a := func(n, ip string) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP(ip)}
	}
	txt := func(n string, s ...string) dns.RR {
		return &dns.TXT{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: s}
	}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: "bl.example.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns.bl.example.test.", Mbox: "hostmaster.example.test.", Minttl: 30}
	msg := func(qtype uint16, rcode int, answer, ns []dns.RR) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.Response, m.Rcode, m.Answer, m.Ns = true, rcode, answer, ns
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return [][]byte{
		msg(dns.TypeA, dns.RcodeSuccess, []dns.RR{a(name, "127.0.0.2")}, nil),
		msg(dns.TypeA, dns.RcodeSuccess, []dns.RR{a(name, "127.0.0.4"), a(name, "127.0.0.2"), a(name, "127.0.0.10")}, nil),
		msg(dns.TypeTXT, dns.RcodeSuccess, []dns.RR{txt(name, "Listed: see ", "https://bl.example.test/?127.0.0.2")}, nil),
		msg(dns.TypeA, dns.RcodeNameError, nil, []dns.RR{soa}),
		msg(dns.TypeA, dns.RcodeNameError, nil, nil),
		msg(dns.TypeA, dns.RcodeSuccess, []dns.RR{
			&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 10}, Target: "x.example."},
			a("x.example.", "127.0.0.3")}, nil),
		msg(dns.TypeA, dns.RcodeSuccess, []dns.RR{a(name, "198.51.100.7")}, nil),
		msg(dns.TypeA, dns.RcodeSuccess, []dns.RR{a(name, "127.255.255.254")}, nil),
		msg(dns.TypeA, dns.RcodeSuccess, []dns.RR{a(name, "127.0.0.1")}, nil),
		msg(dns.TypeA, dns.RcodeSuccess, []dns.RR{a(name, "127.0.0.88")}, nil),
		msg(dns.TypeTXT, dns.RcodeSuccess, []dns.RR{txt(name, "\x1b[31mred\x00\r\nnext\xff")}, nil),
	}
}

// FuzzDNSAnswer feeds DNS replies to what turns them into findings: the
// client's answer extraction (answerFrom: CNAMEs, TTLs, RFC 2308 negative
// caching) and the code mapping (lookupName: RFC 5782 §2.3 answers, zone
// codes, the TXT reason; a bitmask list's bits). It must never panic, and
// a listing must be one: codes in 127.0.0.0/8 outside 127.255.255.0/24,
// categories sorted and known, a reason that is one line of printable
// ASCII.
func FuzzDNSAnswer(f *testing.F) {
	for _, s := range answerSeeds(f) {
		f.Add(s)
	}
	c, err := NewDNSClient(DNSConfig{Servers: []string{"127.0.0.1:1"}, Attempts: 1, Timeout: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	zone := Zone{Name: "bl.example.test", TXT: true, Codes: map[netip.Addr]string{
		netip.MustParseAddr("127.0.0.2"): "spam", netip.MustParseAddr("127.0.0.4"): "exploit"}}
	bits := &dnsList{client: c, zone: Zone{Name: "bl.example.test"},
		bits: []bitCategory{{2, "spam"}, {8, "phish"}, {16, "malware"}}}
	known := map[string]bool{"spam": true, "exploit": true, "phish": true, "malware": true, CategoryListed: true}

	f.Fuzz(func(t *testing.T, wire []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(wire); err != nil {
			return
		}
		name := "2.0.0.127.bl.example.test."
		if len(r.Question) == 1 {
			if q := strings.ToLower(dns.Fqdn(r.Question[0].Name)); len(q) <= 254 {
				if _, ok := dns.IsDomainName(q); ok {
					name = q
				}
			}
		}
		var answers [2]Answer
		for i, qtype := range []uint16{dns.TypeA, dns.TypeTXT} {
			a := c.answerFrom(r, cacheKey{name, qtype})
			checkAnswer(t, c, a, qtype)
			answers[i] = a
		}

		// The code mapping, on exactly these answers: they go in the
		// cache, where lookupName takes them.
		exp := time.Now().Add(time.Minute)
		c.cache.put(cacheKey{name, dns.TypeA}, answers[0], exp)
		c.cache.put(cacheKey{name, dns.TypeTXT}, answers[1], exp)
		res, _, err := lookupName(context.Background(), c, zone, "bl.example.test", name, false)
		switch {
		case err != nil:
			if !errors.Is(err, ErrBadAnswer) && !errors.Is(err, ErrRefused) {
				t.Fatalf("lookup of a cached answer failed with %v", err)
			}
			if res.Listed {
				t.Fatalf("an error and a listing: %+v", res)
			}
			return
		case !res.Listed:
			if len(res.Codes) > 0 || len(res.Categories) > 0 || res.Reason != "" {
				t.Fatalf("not listed, yet %+v", res)
			}
			return
		}
		for _, code := range res.Codes {
			if !code.Is4() || !loopback8.Contains(code) || refused24.Contains(code) {
				t.Fatalf("listed with code %s", code)
			}
		}
		if len(res.Categories) == 0 || !slices.IsSorted(res.Categories) || len(slices.Compact(slices.Clone(res.Categories))) != len(res.Categories) {
			t.Fatalf("categories %q", res.Categories)
		}
		for _, cat := range res.Categories {
			if !known[cat] {
				t.Fatalf("category %q is no zone's", cat)
			}
		}
		if len(res.Reason) > MaxReasonLen || strings.ContainsFunc(res.Reason, func(r rune) bool { return r < ' ' || r > '~' }) ||
			strings.TrimSpace(res.Reason) != res.Reason {
			t.Fatalf("reason %q", res.Reason)
		}
		cats, err := bits.categories(res)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("bitmask mapping: %v", err)
			}
			return
		}
		if len(cats) == 0 || !slices.IsSorted(cats) {
			t.Fatalf("bitmask categories %q for %v", cats, res.Codes)
		}
		for _, cat := range cats {
			if !known[cat] {
				t.Fatalf("bitmask category %q", cat)
			}
		}
	})
}

func checkAnswer(t *testing.T, c *DNSClient, a Answer, qtype uint16) {
	t.Helper()
	if !slices.IsSortedFunc(a.Addrs, netip.Addr.Compare) {
		t.Fatalf("addresses not sorted: %v", a.Addrs)
	}
	for _, ip := range a.Addrs {
		if !ip.IsValid() || qtype == dns.TypeA && !ip.Is4() {
			t.Fatalf("address %v for %s", ip, dns.TypeToString[qtype])
		}
	}
	if qtype != dns.TypeTXT && len(a.Texts) > 0 || qtype != dns.TypeA && qtype != dns.TypeAAAA && len(a.Addrs) > 0 {
		t.Fatalf("records of the wrong type for %s: %+v", dns.TypeToString[qtype], a)
	}
	positive := len(a.Addrs) > 0 || len(a.Texts) > 0
	switch {
	case a.TTL == 0 && positive:
		t.Fatalf("a positive answer not cached: %+v", a)
	case a.TTL != 0 && positive && (a.TTL < c.minTTL || a.TTL > c.maxTTL):
		t.Fatalf("TTL %v outside [%v, %v]", a.TTL, c.minTTL, c.maxTTL)
	case a.TTL != 0 && !positive && (a.TTL < c.minTTL || a.TTL > c.maxNegTTL):
		t.Fatalf("negative TTL %v outside [%v, %v]", a.TTL, c.minTTL, c.maxNegTTL)
	}
}
