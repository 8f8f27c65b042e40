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

	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/pipeline"
)

// uriLists serves uribl.test (whole codes) and multi.test (a SURBL-style
// bitmask list).
func uriLists(t testing.TB) *dnsServer {
	s := newDNSServer(t)
	s.uriList("uribl.test")
	s.uriList("multi.test")
	s.add(
		"evil.example.uribl.test. 300 IN A 127.0.1.4",
		"login.good.example.uribl.test. 300 IN A 127.0.1.2",
		"66.2.0.192.uribl.test. 300 IN A 127.0.1.2",
		// 8 (phish) + 16 (malware) + 32 (not configured: ignored).
		"bits.example.multi.test. 300 IN A 127.0.0.56",
		"odd.example.multi.test. 300 IN A 127.0.0.32",
		"blocked.example.multi.test. 300 IN A 127.0.0.1",
		"evil.example.multi.test. 300 IN A 127.0.0.64",
	)
	return s
}

var (
	uriblZone = DNSZone{Name: "uribl.test", Codes: map[netip.Addr]string{
		addr("127.0.1.2"): "phish", addr("127.0.1.4"): "spam"}}
	multiZone = DNSZone{Name: "multi.test", Bitmask: map[int]string{8: "phish", 16: "malware", 64: "spam"}}
)

func TestWRSFindings(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c})

	tests := []struct {
		name   string
		mail   string
		status pipeline.Status
		cats   []string
		items  []string
		detail string
	}{
		{"listed domain", textMail("http://evil.example/win", "https://clean.example/"),
			pipeline.Listed, []string{"spam"},
			[]string{"evil.example multi.test spam", "evil.example uribl.test spam"}, "listed by uribl.test, multi.test; 2 urls"},
		{"listed host, clean domain", textMail("https://login.good.example/reset"),
			pipeline.Listed, []string{"phish"}, []string{"login.good.example uribl.test phish"}, "1 urls"},
		{"bitmask, two bits set", textMail("http://www.bits.example/x"),
			pipeline.Listed, []string{"malware", "phish"}, []string{"bits.example multi.test malware,phish"}, "listed by multi.test"},
		{"bitmask, only unmapped bits", textMail("http://odd.example/"),
			pipeline.Listed, []string{CategoryListed}, []string{"odd.example multi.test listed"}, ""},
		{"IP URL", textMail("http://192.0.2.66/login.php"),
			pipeline.Listed, []string{"phish"}, []string{"192.0.2.66 uribl.test phish"}, ""},
		{"clean", textMail("https://clean.example/a", "https://www.clean.example/b", "http://192.0.2.1/"),
			pipeline.Clean, nil, nil, "3 urls"},
		{"no urls", "Subject: hi\r\n\r\nNothing to click here.\r\n",
			pipeline.Clean, nil, nil, "no urls"},
		{"bitmask 127.0.0.1 is a refusal, not a listing", textMail("http://blocked.example/"),
			pipeline.Skipped, nil, nil, "multi.test: query refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := w.Inspect(context.Background(), tx(tc.mail))
			wantFinding(t, f, tc.status, tc.cats, tc.detail)
			if got := items(f); !slices.Equal(got, tc.items) {
				t.Errorf("items = %q, want %q", got, tc.items)
			}
			if f.Stage != "wrs" || f.Duration <= 0 {
				t.Errorf("stage %q duration %v", f.Stage, f.Duration)
			}
		})
	}
	// The registrable domain and the full host were both asked, once.
	for _, n := range []string{"good.example.uribl.test", "login.good.example.uribl.test", "bits.example.multi.test", "www.bits.example.multi.test"} {
		if got := s.count(n, dns.TypeA); got != 1 {
			t.Errorf("%s asked %d times, want 1", n, got)
		}
	}
}

func TestWRSTruncated(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone}, Client: c,
		Extractor: links.Config{Limits: links.Limits{MaxURLs: 2}}})
	f := w.Inspect(context.Background(), tx(textMail("https://a.example/", "https://b.example/", "http://evil.example/")))
	wantFinding(t, f, pipeline.Clean, nil, "2 urls; truncated")
	if f.Stage = "wrs"; !f.Incomplete || f.Trace() != "wrs=clean(incomplete)" {
		t.Errorf("a truncated extraction is not marked incomplete: %+v, trace %q", f, f.Trace())
	}
	if s.count("evil.example.uribl.test", dns.TypeA) != 0 {
		t.Error("a URL past MaxURLs was looked up")
	}
}

// TestWRSSkipIPs: a DBL-style zone is not asked about IP literals.
func TestWRSSkipIPs(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	z := uriblZone
	z.SkipIPs = true
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{z}, Client: c})
	f := w.Inspect(context.Background(), tx(textMail("http://192.0.2.66/")))
	wantFinding(t, f, pipeline.Clean, nil, "1 urls")
	if n := s.count("66.2.0.192.uribl.test", dns.TypeA); n != 0 {
		t.Errorf("IP asked %d times", n)
	}
}

// TestWRSListedDespiteFailure: one backend lists, the other fails: the
// listing stands and the failure is named (the ERS rule).
func TestWRSListedDespiteFailure(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	sb := newFakeSB(t)
	sb.set("503")
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone}, Client: c, SafeBrowsing: sb.config()})
	f := w.Inspect(context.Background(), tx(textMail("http://evil.example/")))
	wantFinding(t, f, pipeline.Listed, []string{"spam"}, "listed by uribl.test; safebrowsing: HTTP 503; 1 urls")

	f = w.Inspect(context.Background(), tx(textMail("http://clean.example/")))
	wantFinding(t, f, pipeline.Skipped, nil, "safebrowsing: HTTP 503; 1 urls")
	if f.Trace() != "wrs=skipped" {
		t.Errorf("trace %q", f.Trace())
	}
}

// TestWRSTimeoutWithinBudget: a list that never answers makes the message
// Skipped when the budget ends, not after the resolver's retries.
func TestWRSTimeoutWithinBudget(t *testing.T) {
	s := uriLists(t)
	s.set("uribl.test", func(z *fakeZone) { z.blackhole = true })
	c := newClient(t, DNSConfig{Timeout: 2 * time.Second, Attempts: 2}, s.Addr)
	sb := newFakeSB(t)
	sb.set("slow")
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone}, Client: c, SafeBrowsing: sb.config(), Budget: 200 * time.Millisecond})
	start := time.Now()
	f := w.Inspect(context.Background(), tx(textMail("http://new.example/", "https://other.example/")))
	took := time.Since(start)
	wantFinding(t, f, pipeline.Skipped, nil, "uribl.test: timeout; safebrowsing: timeout; 2 urls")
	// Generous: the point is "not 4s of DNS retries, not the 5s HTTP timeout".
	if took > 3*time.Second {
		t.Errorf("Inspect took %v with a 200ms budget", took)
	}
	if h := healthOf(w, "uribl.test"); h.Failures != 1 || h.State != StateClosed {
		t.Errorf("health %+v", h)
	}
}

// TestWRSCallerCancelNotAFailure: a session that goes away does not count
// against the backend.
func TestWRSCallerCancelNotAFailure(t *testing.T) {
	fb := &fakeBackend{name: "fake", block: make(chan struct{})}
	w, _ := newWRS(t, WRSConfig{Backends: []Backend{fb}, Breaker: BreakerConfig{Failures: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan pipeline.Finding)
	go func() { done <- w.Inspect(ctx, tx(textMail("http://x.example/"))) }()
	waitFor(t, "lookup", func() bool { c, _ := fb.counts(); return c == 1 })
	cancel()
	f := <-done
	wantFinding(t, f, pipeline.Skipped, nil, "fake: cancelled")
	if h := healthOf(w, "fake"); h.State != StateClosed || h.Failures != 0 {
		t.Errorf("health after cancel %+v", h)
	}
}

func TestWRSNoMessageAndClose(t *testing.T) {
	fb := &fakeBackend{name: "fake"}
	w, _ := newWRS(t, WRSConfig{Backends: []Backend{fb}})
	f := w.Inspect(context.Background(), &pipeline.Transaction{})
	wantFinding(t, f, pipeline.Clean, nil, "no urls")
	w.Close()
	f = w.Inspect(context.Background(), tx(textMail("http://x.example/")))
	wantFinding(t, f, pipeline.Disabled, nil, "stage closed")
	if c, _ := fb.counts(); c != 0 {
		t.Errorf("backend asked %d times", c)
	}
}

// TestWRSInPipeline: WRS behind pipeline.Run, with the finding a policy
// sees.
func TestWRSInPipeline(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c})
	fs, err := pipeline.New(w).Run(context.Background(), tx(textMail("https://login.good.example/", "http://www.bits.example/")))
	if err != nil {
		t.Fatal(err)
	}
	f := fs[0]
	if !f.Has("phish") || !f.Has("malware") || f.Trace() != "wrs=listed(malware,phish)" {
		t.Errorf("finding %+v trace %s", f, f.Trace())
	}
}

func TestWRSConfigValidate(t *testing.T) {
	c := &DNSClient{}
	sb := &SafeBrowsingConfig{APIKey: "k"}
	tests := []struct {
		name string
		cfg  WRSConfig
		want string
	}{
		{"nothing", WRSConfig{}, "no zones and no safebrowsing"},
		{"zones without client", WRSConfig{Zones: []DNSZone{{Name: "a.test"}}}, "need a DNS client"},
		{"bad zone", WRSConfig{Zones: []DNSZone{{Name: "a..test"}}, Client: c}, "not a valid DNS name"},
		{"twice", WRSConfig{Zones: []DNSZone{{Name: "a.test"}, {Name: "A.test."}}, Client: c}, "listed twice"},
		{"bit 3", WRSConfig{Zones: []DNSZone{{Name: "a.test", Bitmask: map[int]string{2: "x", 3: "y"}}}, Client: c}, "3 is not a single bit"},
		{"bit 256", WRSConfig{Zones: []DNSZone{{Name: "a.test", Bitmask: map[int]string{256: "x"}}}, Client: c}, "256 is not a single bit"},
		{"bit 0", WRSConfig{Zones: []DNSZone{{Name: "a.test", Bitmask: map[int]string{0: "x"}}}, Client: c}, "0 is not a single bit"},
		{"empty category", WRSConfig{Zones: []DNSZone{{Name: "a.test", Bitmask: map[int]string{2: ""}}}, Client: c}, "empty category"},
		{"comma category", WRSConfig{Zones: []DNSZone{{Name: "a.test", Bitmask: map[int]string{2: "a,b"}}}, Client: c}, "comma"},
		{"codes and bits", WRSConfig{Zones: []DNSZone{{Name: "a.test", Bitmask: map[int]string{2: "x"},
			Codes: map[netip.Addr]string{addr("127.0.0.2"): "y"}}}, Client: c}, "exclusive"},
		{"bad code", WRSConfig{Zones: []DNSZone{{Name: "a.test", Codes: map[netip.Addr]string{addr("10.0.0.2"): "y"}}}, Client: c}, "not an answer address"},
		{"bad test point", WRSConfig{Zones: []DNSZone{{Name: "a.test", TestPoint: "a b"}}, Client: c}, "test point"},
		{"no key", WRSConfig{SafeBrowsing: &SafeBrowsingConfig{}}, "api_key"},
		{"bad base", WRSConfig{SafeBrowsing: &SafeBrowsingConfig{APIKey: "k", BaseURL: "ftp://x"}}, "base_url"},
		{"bad threat type", WRSConfig{SafeBrowsing: &SafeBrowsingConfig{APIKey: "k", ThreatTypes: map[string]string{"malware": "m"}}}, "threat type"},
		{"zone named safebrowsing", WRSConfig{Zones: []DNSZone{{Name: "safebrowsing"}}, Client: c, SafeBrowsing: sb}, "clashes"},
		{"negative budget", WRSConfig{SafeBrowsing: sb, Budget: -1}, "negative budget"},
		{"negative failures", WRSConfig{SafeBrowsing: sb, Breaker: BreakerConfig{Failures: -1}}, "negative failures"},
		{"bad redirector", WRSConfig{SafeBrowsing: sb, Extractor: links.Config{Redirectors: []links.Redirector{{}}}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if _, err := NewWRS(tc.cfg); err == nil {
				t.Fatal("NewWRS accepted it")
			}
		})
	}
	if err := ValidateBitmask(map[int]string{1: "a", 2: "b", 128: "c"}); err != nil {
		t.Error(err)
	}
	if err := (DNSZone{Name: "dbl.test", TestPoint: "dbltest.com", SkipIPs: true}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestCheckHealthDomain: the RFC 5782 §5 test points of a domain list,
// and rbldnsd's dnset behaviour without a "test" line.
func TestCheckHealthDomain(t *testing.T) {
	s := newDNSServer(t)
	s.uriList("good.test")
	s.addZone("notest.test", true, 300, 60) // like a dnset without a "test" line
	s.addZone("wild.test", true, 300, 60)
	s.add("test.wild.test. 300 IN A 127.0.0.2", "invalid.wild.test. 300 IN A 127.0.0.2")
	s.addZone("dbl.test", true, 300, 60)
	s.add("dbltest.com.dbl.test. 300 IN A 127.0.1.2")
	c := newClient(t, DNSConfig{}, s.Addr)
	ctx := context.Background()
	if err := CheckHealthDomain(ctx, c, Zone{Name: "good.test"}, ""); err != nil {
		t.Error(err)
	}
	if err := CheckHealthDomain(ctx, c, Zone{Name: "dbl.test"}, "dbltest.com"); err != nil {
		t.Error(err)
	}
	for zone, want := range map[string]string{
		"notest.test": "test.notest.test is not listed",
		"wild.test":   "invalid.wild.test is listed",
		"nozone.test": "REFUSED",
	} {
		err := CheckHealthDomain(ctx, c, Zone{Name: zone}, "")
		if !errors.Is(err, ErrHealthCheck) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", zone, err, want)
		}
	}
}
