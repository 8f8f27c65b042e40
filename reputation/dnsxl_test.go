package reputation

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestQueryNameIP(t *testing.T) {
	tests := []struct {
		ip, zone, want string
	}{
		// RFC 5782 §2.1.
		{"192.0.2.99", "bad.example.com", "99.2.0.192.bad.example.com"},
		{"127.0.0.2", "bl.test", "2.0.0.127.bl.test"},
		{"10.0.0.255", "BL.Test.", "255.0.0.10.bl.test"},
		// RFC 5782 §2.4.
		{"2001:db8:1:2:3:4:567:89ab", "ugly.example.com",
			"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"},
		{"::1", "bl.test", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test"},
		{"fe80::1%eth0", "bl.test", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.bl.test"},
		// An IPv4-mapped IPv6 address is looked up as IPv4.
		{"::ffff:192.0.2.99", "bl.test", "99.2.0.192.bl.test"},
	}
	for _, tt := range tests {
		got, err := QueryNameIP(netip.MustParseAddr(tt.ip), tt.zone)
		if err != nil || got != tt.want {
			t.Errorf("QueryNameIP(%s, %s) = %q, %v; want %q", tt.ip, tt.zone, got, err, tt.want)
		}
	}
	if _, err := QueryNameIP(netip.Addr{}, "bl.test"); err == nil {
		t.Error("invalid address: no error")
	}
}

func TestQueryNameDomain(t *testing.T) {
	tests := []struct {
		domain, zone, want string
	}{
		{"example.com", "dbl.test", "example.com.dbl.test"},
		{"Mail.Example.COM.", "DBL.test.", "mail.example.com.dbl.test"},
		{"xn--bcher-kva.example", "dbl.test", "xn--bcher-kva.example.dbl.test"},
	}
	for _, tt := range tests {
		got, err := QueryNameDomain(tt.domain, tt.zone)
		if err != nil || got != tt.want {
			t.Errorf("QueryNameDomain(%s, %s) = %q, %v; want %q", tt.domain, tt.zone, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", ".", "a..b", ".example.com", strings.Repeat("a", 64) + ".com", strings.Repeat("abcdefghi.", 25) + "com"} {
		if got, err := QueryNameDomain(bad, "dbl.test"); err == nil {
			t.Errorf("QueryNameDomain(%q) = %q, want an error", bad, got)
		}
	}
}

func TestZoneValidate(t *testing.T) {
	good := map[netip.Addr]string{addr("127.0.0.2"): "spam", addr("127.0.0.10"): "dynamic"}
	tests := []struct {
		z  Zone
		ok bool
	}{
		{Zone{Name: "zen.spamhaus.org", Codes: good}, true},
		{Zone{Name: "BL.Example.org."}, true},
		{Zone{Name: ""}, false},
		{Zone{Name: "bad..zone"}, false},
		{Zone{Name: ".zone"}, false},
		{Zone{Name: strings.Repeat("a.", 100) + "org"}, false},
		{Zone{Name: "bl.test", Codes: map[netip.Addr]string{addr("10.0.0.2"): "spam"}}, false},
		{Zone{Name: "bl.test", Codes: map[netip.Addr]string{addr("::1"): "spam"}}, false},
		{Zone{Name: "bl.test", Codes: map[netip.Addr]string{addr("127.255.255.254"): "spam"}}, false},
		{Zone{Name: "bl.test", Codes: map[netip.Addr]string{addr("127.0.0.2"): " "}}, false},
	}
	for _, tt := range tests {
		if err := tt.z.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.z, err, tt.ok)
		}
	}
}

func TestParseCodes(t *testing.T) {
	got, err := ParseCodes(map[string]string{"127.0.0.2": "spam", " 127.0.0.4 ": "exploit"})
	if err != nil || len(got) != 2 || got[addr("127.0.0.2")] != "spam" || got[addr("127.0.0.4")] != "exploit" {
		t.Errorf("ParseCodes = %v, %v", got, err)
	}
	for _, bad := range []string{"spam", "127.0.0", "::1", ""} {
		if _, err := ParseCodes(map[string]string{bad: "x"}); err == nil || !strings.Contains(err.Error(), "code") {
			t.Errorf("ParseCodes(%q): err %v", bad, err)
		}
	}
}

// listZone is the zone most tests use.
var listZone = Zone{
	Name:  "bl.test",
	Codes: map[netip.Addr]string{addr("127.0.0.2"): "spam", addr("127.0.0.4"): "exploit"},
}

func TestLookupIPCodes(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add(
		"10.2.0.192.bl.test. 60 IN A 127.0.0.4",
		"10.2.0.192.bl.test. 60 IN A 127.0.0.2",
		"11.2.0.192.bl.test. 60 IN A 127.0.0.9",
		"12.2.0.192.bl.test. 60 IN A 127.0.0.2",
		"12.2.0.192.bl.test. 60 IN A 127.0.0.9",
		"13.2.0.192.bl.test. 60 IN A 127.255.255.254",
		"14.2.0.192.bl.test. 60 IN A 10.0.0.1",
		"15.2.0.192.bl.test. 60 IN A 127.0.0.2",
		"15.2.0.192.bl.test. 60 IN A 127.255.255.255",
		"16.2.0.192.bl.test. 60 IN TXT \"no address\"",
		"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test. 60 IN A 127.0.0.4",
	)
	c := newClient(t, DNSConfig{}, s.Addr)
	tests := []struct {
		ip     string
		listed bool
		cats   []string
		codes  []string
		err    error
	}{
		{ip: "127.0.0.2", listed: true, cats: []string{"spam"}, codes: []string{"127.0.0.2"}},
		{ip: "192.0.2.10", listed: true, cats: []string{"exploit", "spam"}, codes: []string{"127.0.0.2", "127.0.0.4"}},
		// A code the zone does not map is reported, with its code.
		{ip: "192.0.2.11", listed: true, cats: []string{"listed"}, codes: []string{"127.0.0.9"}},
		{ip: "192.0.2.12", listed: true, cats: []string{"listed", "spam"}, codes: []string{"127.0.0.2", "127.0.0.9"}},
		// Refused and foreign answers are errors, not listings.
		{ip: "192.0.2.13", err: ErrRefused},
		{ip: "192.0.2.14", err: ErrBadAnswer},
		{ip: "192.0.2.15", err: ErrRefused},
		{ip: "192.0.2.99"}, // NXDOMAIN
		{ip: "192.0.2.16"}, // NODATA
		{ip: "127.0.0.1"},  // the negative test point
		{ip: "::ffff:192.0.2.10", listed: true, cats: []string{"exploit", "spam"}, codes: []string{"127.0.0.2", "127.0.0.4"}},
		{ip: "2001:db8:1:2:3:4:567:89ab", listed: true, cats: []string{"exploit"}, codes: []string{"127.0.0.4"}},
		{ip: "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			res, err := LookupIP(context.Background(), c, listZone, addr(tt.ip))
			if tt.err != nil {
				if !errors.Is(err, tt.err) || res.Listed {
					t.Fatalf("got %+v, %v; want error %v", res, err, tt.err)
				}
				if errors.Is(err, ErrDNS) {
					t.Errorf("list error %v also wraps ErrDNS", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var codes []string
			for _, a := range res.Codes {
				codes = append(codes, a.String())
			}
			if res.Listed != tt.listed || !slices.Equal(res.Categories, tt.cats) || !slices.Equal(codes, tt.codes) {
				t.Errorf("got listed=%v cats=%v codes=%v; want %v %v %v", res.Listed, res.Categories, codes, tt.listed, tt.cats, tt.codes)
			}
			want, _ := QueryNameIP(addr(tt.ip), "bl.test")
			if res.Zone != "bl.test" || res.Query != want || res.Reason != "" {
				t.Errorf("zone %q query %q reason %q", res.Zone, res.Query, res.Reason)
			}
		})
	}
	// TXT is only asked for when the zone wants it.
	if n := s.count("10.2.0.192.bl.test", dns.TypeTXT); n != 0 {
		t.Errorf("TXT asked %d times without Zone.TXT", n)
	}
}

func TestLookupIPReason(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	long := strings.Repeat("x", 150)
	s.add(
		"10.2.0.192.bl.test. 60 IN A 127.0.0.2",
		`10.2.0.192.bl.test. 60 IN TXT "Listed\010 by\009us: " "see https://bl.test/q?10\"x\"\255"`,
		"11.2.0.192.bl.test. 60 IN A 127.0.0.2",
		`11.2.0.192.bl.test. 60 IN TXT "zeta reason"`,
		`11.2.0.192.bl.test. 60 IN TXT "alpha reason"`,
		"12.2.0.192.bl.test. 60 IN A 127.0.0.2",
		`12.2.0.192.bl.test. 60 IN TXT "`+long+`" "`+long+`"`,
		"13.2.0.192.bl.test. 60 IN A 127.0.0.2", // no TXT
	)
	c := newClient(t, DNSConfig{}, s.Addr)
	z := listZone
	z.TXT = true
	tests := []struct{ ip, want string }{
		{"192.0.2.10", `Listed by us: see https://bl.test/q?10"x"?`},
		{"192.0.2.11", "alpha reason"},
		{"192.0.2.12", strings.Repeat("x", MaxReasonLen)},
		{"192.0.2.13", ""},
	}
	for _, tt := range tests {
		res, err := LookupIP(context.Background(), c, z, addr(tt.ip))
		if err != nil || !res.Listed || res.Reason != tt.want {
			t.Errorf("%s: listed=%v reason=%q err=%v; want %q", tt.ip, res.Listed, res.Reason, err, tt.want)
		}
	}
	// Not listed: no TXT question.
	if _, err := LookupIP(context.Background(), c, z, addr("192.0.2.99")); err != nil {
		t.Fatal(err)
	}
	if n := s.count("99.2.0.192.bl.test", dns.TypeTXT); n != 0 {
		t.Errorf("TXT asked %d times for an unlisted address", n)
	}
}

// A listing whose TXT record never comes is still a listing, and the wait
// for the reason is bounded by one attempt, not by the caller's budget.
func TestLookupIPReasonTimeout(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add("10.2.0.192.bl.test. 60 IN A 127.0.0.2")
	s.set("bl.test", func(z *fakeZone) { z.holeTXT = true })
	c := newClient(t, DNSConfig{Timeout: 100 * time.Millisecond}, s.Addr)
	z := listZone
	z.TXT = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	res, err := LookupIP(ctx, c, z, addr("192.0.2.10"))
	if err != nil || !res.Listed || res.Reason != "" {
		t.Fatalf("%+v, %v", res, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestLookupDomain(t *testing.T) {
	s := newDNSServer(t)
	s.addZone("dbl.test", true, 300, 60)
	s.add("spam.example.dbl.test. 60 IN A 127.0.1.2")
	c := newClient(t, DNSConfig{}, s.Addr)
	z := Zone{Name: "dbl.test", Codes: map[netip.Addr]string{addr("127.0.1.2"): "spam"}}
	res, err := LookupDomain(context.Background(), c, z, "Spam.Example.")
	if err != nil || !res.Listed || !slices.Equal(res.Categories, []string{"spam"}) || res.Query != "spam.example.dbl.test" {
		t.Errorf("listed domain: %+v, %v", res, err)
	}
	res, err = LookupDomain(context.Background(), c, z, "ham.example")
	if err != nil || res.Listed {
		t.Errorf("clean domain: %+v, %v", res, err)
	}
	if _, err := LookupDomain(context.Background(), c, z, "bad..name"); !errors.Is(err, ErrDNS) {
		t.Errorf("bad name: %v", err)
	}
}

func TestCheckHealth(t *testing.T) {
	s := newDNSServer(t)
	s.addList("good.test")
	s.addZone("empty.test", true, 300, 60) // 127.0.0.2 not listed
	s.addList("all.test")                  // lists 127.0.0.1 too
	s.add("1.0.0.127.all.test. 60 IN A 127.0.0.2")
	s.addZone("refused.test", true, 300, 60)
	s.add("2.0.0.127.refused.test. 60 IN A 127.255.255.254")
	s.addList("fail.test")
	s.set("fail.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	c := newClient(t, DNSConfig{}, s.Addr)

	if err := CheckHealth(context.Background(), c, Zone{Name: "good.test"}); err != nil {
		t.Errorf("good zone: %v", err)
	}
	tests := []struct {
		zone string
		also error
		text string
	}{
		{"empty.test", nil, "127.0.0.2 is not listed"},
		{"all.test", nil, "127.0.0.1 is listed"},
		{"refused.test", ErrRefused, "127.0.0.2"},
		{"fail.test", ErrDNS, "SERVFAIL"},
		{"unknown.test", ErrDNS, "REFUSED"},
	}
	for _, tt := range tests {
		err := CheckHealth(context.Background(), c, Zone{Name: tt.zone})
		if !errors.Is(err, ErrHealthCheck) || (tt.also != nil && !errors.Is(err, tt.also)) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: %v; want %v and %v containing %q", tt.zone, err, ErrHealthCheck, tt.also, tt.text)
		}
	}
	// The check asks the network every time: a cached answer proves
	// nothing about the path to the list.
	if err := CheckHealth(context.Background(), c, Zone{Name: "good.test"}); err != nil {
		t.Fatal(err)
	}
	if n := s.count("2.0.0.127.good.test", dns.TypeA); n != 2 {
		t.Errorf("test point asked %d times in two checks, want 2", n)
	}
}

func TestSanitizeReason(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"  lead and trail  ", "lead and trail"},
		{"a\r\nb\tc\x00d\x7fe", "a b c d e"},
		{"ünïcode ✓", "?n?code ?"},
		{"bad utf8 \xff\xfe", "bad utf8 ??"},
		{strings.Repeat("ab ", 100), strings.Repeat("ab ", 67)[:MaxReasonLen]},
		{strings.Repeat("x", MaxReasonLen-1) + " y", strings.Repeat("x", MaxReasonLen-1)},
		{"\n\n\n", ""},
	}
	for _, tt := range tests {
		if got := SanitizeReason(tt.in); got != tt.want {
			t.Errorf("SanitizeReason(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// checkReason is the property every sanitised reason has.
func checkReason(t *testing.T, in, out string) {
	if len(out) > MaxReasonLen {
		t.Fatalf("SanitizeReason(%q): %d bytes", in, len(out))
	}
	for i := 0; i < len(out); i++ {
		if out[i] < ' ' || out[i] > '~' {
			t.Fatalf("SanitizeReason(%q) = %q: byte %#x", in, out, out[i])
		}
	}
	if strings.TrimSpace(out) != out || strings.Contains(out, "  ") {
		t.Fatalf("SanitizeReason(%q) = %q: white space not normalised", in, out)
	}
}

func FuzzSanitizeReason(f *testing.F) {
	for _, s := range []string{
		"Listed by SBL, see https://check.spamhaus.org/sbl/query/SBL123456",
		"https://www.spamcop.net/bl.shtml?192.0.2.1",
		"Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.1\r\n",
		"\x00\x01\x1b[31mred\x1b[0m",
		"ünïcode",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkReason(t, in, SanitizeReason(in))
	})
}

func TestUnescapeTXT(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, "plain"},
		{`a\"b\\c`, `a"b\c`},
		{`\010\255x`, "\n\xffx"},
		{`\999`, "999"},
		{`end\`, `end\`},
	}
	for _, tt := range tests {
		if got := unescapeTXT(tt.in); got != tt.want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzQueryNameDomain(f *testing.F) {
	for _, s := range []string{"example.com", "Mail.Example.COM.", "xn--bcher-kva.example", "a..b", "-x-.example", "a\\.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, domain string) {
		name, err := QueryNameDomain(domain, "dbl.test")
		if err != nil {
			return
		}
		if !strings.HasSuffix(name, ".dbl.test") || len(name) > 253 {
			t.Fatalf("QueryNameDomain(%q) = %q", domain, name)
		}
		if _, ok := dns.IsDomainName(name); !ok {
			t.Fatalf("QueryNameDomain(%q) = %q: not a domain name", domain, name)
		}
	})
}
