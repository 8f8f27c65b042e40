package reputation

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNewDNSClientServers(t *testing.T) {
	c, err := NewDNSClient(DNSConfig{Servers: []string{"127.0.0.1", "192.0.2.1:5353", "::1", "[2001:db8::1]", "[2001:db8::2]:5300"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{"127.0.0.1:53", "192.0.2.1:5353", "[::1]:53", "[2001:db8::1]:53", "[2001:db8::2]:5300"}
	if got := c.Servers(); !slices.Equal(got, want) {
		t.Errorf("Servers() = %v, want %v", got, want)
	}
	for _, bad := range []DNSConfig{
		{Servers: []string{"dns.example"}},
		{Servers: []string{"127.0.0.1:0"}},
		{Servers: []string{"127.0.0.1:dns"}},
		{Servers: []string{"127.0.0.1"}, Timeout: -time.Second},
		{Servers: []string{"127.0.0.1"}, MinTTL: time.Hour, MaxTTL: time.Minute},
		{Servers: []string{"127.0.0.1"}, MaxInflight: -1},
		{ResolvConf: filepath.Join(t.TempDir(), "missing")},
		{ResolvConf: "testdata/resolv-empty.conf"},
	} {
		if c, err := NewDNSClient(bad); err == nil {
			c.Close()
			t.Errorf("NewDNSClient(%+v): no error", bad)
		}
	}
}

func TestNewDNSClientResolvConf(t *testing.T) {
	c, err := NewDNSClient(DNSConfig{ResolvConf: "testdata/resolv.conf"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}
	if got := c.Servers(); !slices.Equal(got, want) {
		t.Errorf("Servers() = %v, want %v", got, want)
	}
	if _, err := os.Stat(DefaultResolvConf); err == nil {
		if c, err := NewDNSClient(DNSConfig{}); err == nil {
			c.Close()
		}
	}
}

func TestQueryValidatesName(t *testing.T) {
	c := newClient(t, DNSConfig{}, "127.0.0.1:1")
	if _, err := c.Query(context.Background(), "bad..name", dns.TypeA); !errors.Is(err, ErrDNS) {
		t.Errorf("bad name: %v", err)
	}
}

func TestCachePositiveTTL(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add("10.2.0.192.bl.test. 60 IN A 127.0.0.2", "10.2.0.192.bl.test. 40 IN A 127.0.0.4")
	clock := newFakeClock()
	c := newClient(t, DNSConfig{Clock: clock}, s.Addr)
	ask := func() Answer {
		t.Helper()
		a, err := c.Query(context.Background(), "10.2.0.192.bl.test", dns.TypeA)
		if err != nil || len(a.Addrs) != 2 {
			t.Fatalf("Query: %+v, %v", a, err)
		}
		return a
	}
	// The TTL is the smallest of the answer's records.
	if a := ask(); a.TTL != 40*time.Second || a.Rcode != dns.RcodeSuccess {
		t.Errorf("TTL %v rcode %d, want 40s NOERROR", a.TTL, a.Rcode)
	}
	clock.Advance(39 * time.Second)
	ask()
	if n := s.count("10.2.0.192.bl.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries within the TTL, want 1", n)
	}
	clock.Advance(time.Second)
	ask()
	if n := s.count("10.2.0.192.bl.test", dns.TypeA); n != 2 {
		t.Fatalf("%d queries after the TTL, want 2", n)
	}
	if st := c.Stats(); st.CacheHits != 1 || st.Lookups != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestCacheTTLClamp(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add("1.2.0.192.bl.test. 0 IN A 127.0.0.2", "2.2.0.192.bl.test. 604800 IN A 127.0.0.2")
	c := newClient(t, DNSConfig{MinTTL: 10 * time.Second, MaxTTL: time.Hour}, s.Addr)
	for name, want := range map[string]time.Duration{"1.2.0.192.bl.test": 10 * time.Second, "2.2.0.192.bl.test": time.Hour} {
		a, err := c.Query(context.Background(), name, dns.TypeA)
		if err != nil || a.TTL != want {
			t.Errorf("%s: TTL %v, %v; want %v", name, a.TTL, err, want)
		}
	}
}

func TestNegativeCache(t *testing.T) {
	s := newDNSServer(t)
	s.addZone("min.test", true, 300, 30) // RFC 2308 §5: min(SOA TTL, MINIMUM) = 30s
	s.addZone("ttl.test", true, 20, 300) //                                     = 20s
	s.addZone("nosoa.test", false, 0, 0) // not cached
	s.addZone("long.test", true, 86400, 86400)
	s.add("nodata.min.test. 60 IN TXT \"only a TXT\"")
	clock := newFakeClock()
	c := newClient(t, DNSConfig{Clock: clock, MaxNegativeTTL: 10 * time.Minute}, s.Addr)

	tests := []struct {
		name  string
		rcode int
		ttl   time.Duration
	}{
		{"x.min.test", dns.RcodeNameError, 30 * time.Second},
		{"nodata.min.test", dns.RcodeSuccess, 30 * time.Second},
		{"x.ttl.test", dns.RcodeNameError, 20 * time.Second},
		{"x.nosoa.test", dns.RcodeNameError, 0},
		{"x.long.test", dns.RcodeNameError, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ask := func() {
				t.Helper()
				a, err := c.Query(context.Background(), tt.name, dns.TypeA)
				if err != nil || len(a.Addrs) != 0 || a.Rcode != tt.rcode || a.TTL != tt.ttl {
					t.Fatalf("Query: %+v, %v; want rcode %d TTL %v", a, err, tt.rcode, tt.ttl)
				}
			}
			ask()
			ask()
			want := 1
			if tt.ttl == 0 {
				want = 2
			}
			if n := s.count(tt.name, dns.TypeA); n != want {
				t.Fatalf("%d queries, want %d", n, want)
			}
			if tt.ttl == 0 {
				return
			}
			clock.Advance(tt.ttl - time.Second)
			ask()
			clock.Advance(time.Second)
			ask()
			if n := s.count(tt.name, dns.TypeA); n != 2 {
				t.Fatalf("%d queries after the negative TTL, want 2", n)
			}
		})
	}
}

func TestCacheBounded(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	c := newClient(t, DNSConfig{CacheSize: 2}, s.Addr)
	names := []string{"a.bl.test", "b.bl.test", "c.bl.test"}
	for _, n := range names {
		if _, err := c.Query(context.Background(), n, dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Stats().CacheEntries; n != 2 {
		t.Errorf("%d entries in a cache of 2", n)
	}
	// c and b are cached; a, the least recently used, was evicted.
	for _, n := range []string{"c.bl.test", "b.bl.test", "a.bl.test"} {
		if _, err := c.Query(context.Background(), n, dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	for n, want := range map[string]int{"a.bl.test": 2, "b.bl.test": 1, "c.bl.test": 1} {
		if got := s.count(n, dns.TypeA); got != want {
			t.Errorf("%s asked %d times, want %d", n, got, want)
		}
	}

	// A negative CacheSize disables the cache.
	nc := newClient(t, DNSConfig{CacheSize: -1}, s.Addr)
	for range 2 {
		if _, err := nc.Query(context.Background(), "d.bl.test", dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.count("d.bl.test", dns.TypeA); got != 2 || nc.Stats().CacheEntries != 0 {
		t.Errorf("uncached client: %d queries, %d entries", got, nc.Stats().CacheEntries)
	}
}

func TestCoalescing(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add("10.2.0.192.bl.test. 60 IN A 127.0.0.2")
	s.set("bl.test", func(z *fakeZone) { z.delay = 50 * time.Millisecond })
	c := newClient(t, DNSConfig{}, s.Addr)

	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = LookupIP(context.Background(), c, listZone, addr("192.0.2.10"))
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !results[i].Listed {
			t.Fatalf("lookup %d: %+v, %v", i, results[i], errs[i])
		}
	}
	if got := s.count("10.2.0.192.bl.test", dns.TypeA); got != 1 {
		t.Errorf("%d parallel identical lookups sent %d queries, want 1", n, got)
	}
	if st := c.Stats(); st.Coalesced+st.CacheHits != n-1 || st.Queries != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A waiter that gives up does not cancel the shared query for the others,
// and the answer still lands in the cache.
func TestCoalescedWaiterGivesUp(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add("10.2.0.192.bl.test. 60 IN A 127.0.0.2")
	s.set("bl.test", func(z *fakeZone) { z.delay = 200 * time.Millisecond })
	c := newClient(t, DNSConfig{}, s.Addr)

	impatient, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	patient := make(chan error, 1)
	go func() {
		_, err := LookupIP(context.Background(), c, listZone, addr("192.0.2.10"))
		patient <- err
	}()
	waitFor(t, "the first query", func() bool { return c.Stats().Inflight == 1 })
	_, err := LookupIP(impatient, c, listZone, addr("192.0.2.10"))
	if !errors.Is(err, ErrDNS) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient waiter: %v", err)
	}
	if err := <-patient; err != nil {
		t.Errorf("patient waiter: %v", err)
	}
	res, err := LookupIP(context.Background(), c, listZone, addr("192.0.2.10"))
	if err != nil || !res.Listed {
		t.Errorf("after: %+v, %v", res, err)
	}
	if got := s.count("10.2.0.192.bl.test", dns.TypeA); got != 1 {
		t.Errorf("%d queries, want 1", got)
	}
}

func TestTruncationRetriesOverTCP(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add("10.2.0.192.bl.test. 60 IN A 127.0.0.2", `10.2.0.192.bl.test. 60 IN TXT "big answer"`)
	s.set("bl.test", func(z *fakeZone) { z.truncate = true })
	c := newClient(t, DNSConfig{}, s.Addr)
	z := listZone
	z.TXT = true
	res, err := LookupIP(context.Background(), c, z, addr("192.0.2.10"))
	if err != nil || !res.Listed || res.Reason != "big answer" {
		t.Fatalf("LookupIP: %+v, %v", res, err)
	}
	udp, tcp := s.counts()
	if udp != 2 || tcp != 2 {
		t.Errorf("UDP %d TCP %d queries, want 2 and 2 (A and TXT)", udp, tcp)
	}
	if st := c.Stats(); st.TCPRetries != 2 || st.Queries != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestServerFallback(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	hole, holeCount := newBlackHole(t)
	c := newClient(t, DNSConfig{Timeout: 100 * time.Millisecond}, hole, s.Addr)
	// The first query times out on the black hole and gets its answer
	// from the second server; the next one starts there.
	for _, n := range []string{"a.bl.test", "b.bl.test", "c.bl.test"} {
		if _, err := c.Query(context.Background(), n, dns.TypeA); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if got := holeCount(); got != 1 {
		t.Errorf("black hole got %d queries, want 1", got)
	}
	if got := s.count("a.bl.test", dns.TypeA) + s.count("b.bl.test", dns.TypeA) + s.count("c.bl.test", dns.TypeA); got != 3 {
		t.Errorf("good server got %d queries, want 3", got)
	}
}

func TestRcodeIsError(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	c := newClient(t, DNSConfig{Attempts: 1}, s.Addr)
	for range 2 {
		_, err := LookupIP(context.Background(), c, listZone, addr("127.0.0.2"))
		var rc *RcodeError
		if !errors.Is(err, ErrDNS) || !errors.As(err, &rc) || rc.Rcode != dns.RcodeServerFailure {
			t.Fatalf("SERVFAIL: %v", err)
		}
	}
	// Failures are not cached.
	if got := s.count("2.0.0.127.bl.test", dns.TypeA); got != 2 {
		t.Errorf("%d queries, want 2", got)
	}
	if st := c.Stats(); st.Failures != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestReplyForAnotherQuestion(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.set("bl.test", func(z *fakeZone) { z.wrongName = true })
	c := newClient(t, DNSConfig{Attempts: 1}, s.Addr)
	if _, err := LookupIP(context.Background(), c, listZone, addr("127.0.0.2")); !errors.Is(err, ErrDNS) {
		t.Errorf("mismatched reply accepted: %v", err)
	}
}

func TestCNAMEFollowed(t *testing.T) {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.add("10.2.0.192.bl.test. 60 IN CNAME 2.0.0.127.bl.test.")
	c := newClient(t, DNSConfig{}, s.Addr)
	res, err := LookupIP(context.Background(), c, listZone, addr("192.0.2.10"))
	if err != nil || !res.Listed || !slices.Equal(res.Categories, []string{"spam"}) {
		t.Errorf("through a CNAME: %+v, %v", res, err)
	}
}

func TestTimeoutBounded(t *testing.T) {
	hole, holeCount := newBlackHole(t)
	c := newClient(t, DNSConfig{Timeout: 50 * time.Millisecond, Attempts: 3}, hole)
	start := time.Now()
	_, err := c.Query(context.Background(), "a.bl.test", dns.TypeA)
	var ne net.Error
	if !errors.Is(err, ErrDNS) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("black hole: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a query with 3 attempts of 50ms took %v", d)
	}
	if got := holeCount(); got != 3 {
		t.Errorf("%d attempts, want 3", got)
	}
}

func TestInflightBounds(t *testing.T) {
	s := newDNSServer(t)
	s.addList("hole.test")
	s.addList("other.test")
	s.set("hole.test", func(z *fakeZone) { z.blackhole = true })
	c := newClient(t, DNSConfig{Timeout: 5 * time.Second, MaxInflight: 5, MaxInflightPerZone: 3}, s.Addr)
	hole := Zone{Name: "hole.test"}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// Three queries take the zone's slots...
	for i := range 3 {
		c.prefetch(cacheKey{"1" + string(rune('0'+i)) + ".2.0.192.hole.test.", dns.TypeA}, "hole.test")
	}
	if got := c.Stats().Inflight; got != 3 {
		t.Fatalf("%d in flight, want 3", got)
	}
	// ...so a fourth fails at once, without a query,
	if _, err := LookupIP(ctx, c, hole, addr("192.0.2.99")); !errors.Is(err, ErrOverloaded) || !errors.Is(err, ErrDNS) {
		t.Errorf("fourth lookup: %v", err)
	}
	if got := s.count("99.2.0.192.hole.test", dns.TypeA); got != 0 {
		t.Errorf("overloaded lookup sent %d queries", got)
	}
	// ...while another zone still has room up to the global bound.
	other := Zone{Name: "other.test"}
	c.prefetch(cacheKey{"1.other.test.", dns.TypeA}, "other.test")
	c.prefetch(cacheKey{"2.other.test.", dns.TypeA}, "other.test")
	waitFor(t, "other.test answers", func() bool { return c.Stats().Inflight == 3 })
	if _, err := LookupIP(context.Background(), c, other, addr("127.0.0.2")); err != nil {
		t.Errorf("other zone: %v", err)
	}
	st := c.Stats()
	if st.Overloaded != 1 || st.Inflight != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestCloseEndsQueries(t *testing.T) {
	hole, _ := newBlackHole(t)
	c, err := NewDNSClient(DNSConfig{Servers: []string{hole}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Query(context.Background(), "a.bl.test", dns.TypeA)
		done <- err
	}()
	waitFor(t, "the query", func() bool { return c.Stats().Inflight == 1 })
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrDNS) {
			t.Errorf("query during Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the query")
	}
	if _, err := c.Query(context.Background(), "b.bl.test", dns.TypeA); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrDNS) {
		t.Errorf("query after Close: %v", err)
	}
	c.Close() // idempotent
}
