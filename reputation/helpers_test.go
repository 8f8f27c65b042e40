package reputation

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/clock/clocktest"
	"github.com/foxproxy/foxproxy/internal/testutil"
)

// dnsServer is a real miekg/dns server on 127.0.0.1:<random port>, UDP and
// TCP on the same port, serving a few fake lists (STYLE example 8). Each
// zone can be switched to misbehave: answer with an rcode, truncate UDP
// replies, never answer, answer late, or answer another question.
type dnsServer struct {
	Addr string

	mu      sync.Mutex
	zones   map[string]*fakeZone
	rrs     map[cacheKey][]dns.RR
	names   map[string]bool // names that own at least one record
	queries map[cacheKey]int
	udp     int
	tcp     int
}

type fakeZone struct {
	soa       *dns.SOA      // in negative answers; nil: none
	rcode     int           // non-zero: every reply has this rcode
	truncate  bool          // UDP replies are empty with TC set
	blackhole bool          // no reply at all
	holeTXT   bool          // no reply to TXT questions
	delay     time.Duration // reply this late
	wrongName bool          // reply carries another question
}

func newDNSServer(t testing.TB) *dnsServer {
	t.Helper()
	s := &dnsServer{
		zones:   make(map[string]*fakeZone),
		rrs:     make(map[cacheKey][]dns.RR),
		names:   make(map[string]bool),
		queries: make(map[cacheKey]int),
	}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

// addZone adds a zone whose negative answers carry an SOA with the given
// TTL and MINIMUM; withSOA false leaves the SOA out.
func (s *dnsServer) addZone(name string, withSOA bool, soaTTL, soaMin uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := &fakeZone{}
	if withSOA {
		fq := dns.Fqdn(name)
		z.soa = &dns.SOA{
			Hdr: dns.RR_Header{Name: fq, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaTTL},
			Ns:  "ns." + fq, Mbox: "hostmaster." + fq, Serial: 1,
			Refresh: 3600, Retry: 600, Expire: 86400, Minttl: soaMin,
		}
	}
	s.zones[strings.ToLower(dns.Fqdn(name))] = z
}

// addList adds an RFC 5782 list zone with its test point 127.0.0.2 listed
// (and TXT), 127.0.0.1 not, and a 60s SOA minimum.
func (s *dnsServer) addList(name string) {
	s.addZone(name, true, 300, 60)
	s.add("2.0.0.127." + name + ". 300 IN A 127.0.0.2")
	s.add("2.0.0.127." + name + `. 300 IN TXT "test point"`)
}

// add adds records in zone file syntax.
func (s *dnsServer) add(rrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			panic(err)
		}
		h := rr.Header()
		name := strings.ToLower(h.Name)
		k := cacheKey{name, h.Rrtype}
		s.rrs[k] = append(s.rrs[k], rr)
		s.names[name] = true
	}
}

// set changes zone name's behaviour.
func (s *dnsServer) set(name string, f func(z *fakeZone)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.zones[strings.ToLower(dns.Fqdn(name))])
}

// count returns how many times the question reached the server.
func (s *dnsServer) count(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}]
}

// counts returns the UDP and TCP queries received.
func (s *dnsServer) counts() (udp, tcp int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udp, s.tcp
}

func (s *dnsServer) zoneOf(name string) (*fakeZone, string) {
	for n := name; n != ""; {
		if z, ok := s.zones[n]; ok {
			return z, n
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			break
		}
		n = n[i+1:]
	}
	return nil, ""
}

func (s *dnsServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 {
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)

	s.mu.Lock()
	s.queries[cacheKey{name, q.Qtype}]++
	if isUDP {
		s.udp++
	} else {
		s.tcp++
	}
	z, _ := s.zoneOf(name)
	var zc fakeZone
	if z != nil {
		zc = *z
	}
	answer := append([]dns.RR(nil), s.rrs[cacheKey{name, q.Qtype}]...)
	// Follow one CNAME, like a recursive resolver would.
	if cn := s.rrs[cacheKey{name, dns.TypeCNAME}]; len(cn) > 0 && q.Qtype != dns.TypeCNAME {
		answer = append(answer, cn...)
		target := strings.ToLower(cn[0].(*dns.CNAME).Target)
		answer = append(answer, s.rrs[cacheKey{target, q.Qtype}]...)
	}
	exists := s.names[name]
	s.mu.Unlock()

	if zc.delay > 0 {
		time.Sleep(zc.delay)
	}
	if zc.blackhole || zc.holeTXT && q.Qtype == dns.TypeTXT {
		return
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	switch {
	case z == nil:
		m.Rcode = dns.RcodeRefused
	case zc.rcode != 0:
		m.Rcode = zc.rcode
	case zc.truncate && isUDP:
		m.Truncated = true
	case len(answer) > 0:
		m.Answer = answer
	default:
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		if zc.soa != nil {
			m.Ns = []dns.RR{zc.soa}
		}
	}
	if zc.wrongName {
		m.Question[0].Name = "other." + m.Question[0].Name
	}
	w.WriteMsg(m)
}

// newBlackHole returns the address of a UDP socket that reads queries and
// never answers, and a function counting the packets it got.
func newBlackHole(t testing.TB) (string, func() int) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// newClient returns a DNSClient for the servers, closed at cleanup.
func newClient(t testing.TB, cfg DNSConfig, servers ...string) *DNSClient {
	t.Helper()
	cfg.Servers = servers
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	c, err := NewDNSClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newFakeClock returns a clock the test moves (clocktest.Fake).
func newFakeClock() *clocktest.Fake {
	return clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// waitFor polls cond for up to 5s; for effects of background work that
// has no completion signal (a prefetch).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, 5*time.Second, cond)
}

// TestMain fails the run if goroutines of this package outlive the tests:
// every query, check and re-check must end by Close.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines() string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "foxproxy/reputation.") && !strings.Contains(g, "leakedGoroutines") && !strings.Contains(g, "TestMain") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
