package reputation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/clock"
)

// Errors. Every error returned by this package wraps one of these; test
// with errors.Is.
var (
	// ErrDNS means the question could not be answered: a timeout, a
	// network error, a server failure (SERVFAIL, REFUSED, ...), a malformed
	// reply, too many outstanding queries, or a closed client.
	ErrDNS = errors.New("dns")
	// ErrOverloaded (always together with ErrDNS) means the bound on
	// outstanding queries was reached, so the query was not sent.
	ErrOverloaded = errors.New("too many outstanding queries")
	// ErrClosed (always together with ErrDNS) means the client was closed.
	ErrClosed = errors.New("client closed")
)

// Defaults for DNSConfig.
const (
	DefaultResolvConf         = "/etc/resolv.conf"
	DefaultTimeout            = 2 * time.Second
	DefaultCacheSize          = 10000
	DefaultMinTTL             = 5 * time.Second
	DefaultMaxTTL             = time.Hour
	DefaultMaxNegativeTTL     = 15 * time.Minute
	DefaultMaxInflight        = 1024
	DefaultMaxInflightPerZone = 256
)

// DNSConfig configures a DNSClient. The zero value is usable: resolvers from
// /etc/resolv.conf and the defaults above.
type DNSConfig struct {
	// Servers are the resolvers, as "ip" or "ip:port" ("[v6]:port");
	// empty means the nameservers of ResolvConf. Names are not allowed:
	// resolving a resolver would need a resolver.
	Servers []string
	// ResolvConf is read when Servers is empty (default /etc/resolv.conf).
	ResolvConf string
	// Timeout bounds one attempt against one server, UDP plus the TCP retry
	// after truncation (default 2s).
	Timeout time.Duration
	// Attempts is how many attempts one query makes, moving to the next
	// server after each failure (default: the number of servers, at least
	// 2). A query therefore takes at most Attempts*Timeout.
	Attempts int
	// CacheSize is the maximum number of cached answers (default 10000);
	// negative disables the cache (queries are still coalesced).
	CacheSize int
	// MinTTL and MaxTTL clamp the TTL of cached answers (defaults 5s, 1h);
	// MaxNegativeTTL clamps negative answers (default 15m).
	MinTTL, MaxTTL, MaxNegativeTTL time.Duration
	// MaxInflight bounds the queries outstanding at once (default 1024),
	// and MaxInflightPerZone those for one list zone (default 256), so a
	// zone whose servers never answer can neither pile up goroutines nor
	// take every slot from the other zones. A lookup that finds no free
	// slot fails at once with ErrOverloaded.
	MaxInflight, MaxInflightPerZone int
	// Clock drives cache expiry (default the system clock).
	Clock clock.Clock
}

// Answer is the answer to one question. A negative answer (NXDOMAIN, or
// NOERROR without records of the asked type: "NODATA") has no Addrs and no
// Texts; it is an answer, not an error. Answers are shared with the cache:
// treat the slices as read-only.
type Answer struct {
	// Rcode is dns.RcodeSuccess or dns.RcodeNameError.
	Rcode int
	// Addrs are the A (or AAAA) records for the name, following CNAMEs,
	// sorted.
	Addrs []netip.Addr
	// Texts are the TXT records for the name, one string per record with
	// its character-strings concatenated, unescaped (raw bytes).
	Texts []string
	// TTL is how long the answer is cached: the minimum TTL of the records
	// used, or for a negative answer the SOA's (RFC 2308 §5), clamped. Zero
	// means not cached.
	TTL time.Duration
}

// Stats are cumulative counters of a DNSClient, for metrics.
type Stats struct {
	Lookups      uint64 // calls that asked for an answer (prefetches included)
	CacheHits    uint64 // answered from the cache
	Coalesced    uint64 // joined a query already in flight
	Queries      uint64 // DNS messages sent (UDP and TCP)
	TCPRetries   uint64 // truncated UDP answers asked again over TCP
	Failures     uint64 // queries that ended in an error after all attempts
	Overloaded   uint64 // lookups refused for lack of a free slot
	Inflight     int    // queries outstanding now
	CacheEntries int    // answers cached now (expired ones included until evicted)
}

// DNSClient is a stub resolver for DNS-list lookups, safe for concurrent
// use. Create it with NewDNSClient, share it between stages, Close it last.
type DNSClient struct {
	servers   []string
	timeout   time.Duration
	attempts  int
	minTTL    time.Duration
	maxTTL    time.Duration
	maxNegTTL time.Duration
	maxFlight int
	maxZone   int
	clock     clock.Clock
	cache     *answerCache
	udp, tcp  *dns.Client
	preferred atomic.Uint32 // index of the server the next query starts with

	base   context.Context // cancelled by Close; parent of every query
	cancel context.CancelFunc
	wg     sync.WaitGroup // running queries

	mu      sync.Mutex
	closed  bool
	flights map[cacheKey]*flight
	perZone map[string]int

	lookups, hits, coalesced, queries, tcpRetries, failures, overloaded atomic.Uint64
}

// flight is one query on the wire, shared by every lookup of the same
// question while it runs. ans and err are written before done is closed.
type flight struct {
	done chan struct{}
	ans  Answer
	err  error
}

// NewDNSClient returns a client for cfg. It fails if no usable server is
// configured or a value is out of range.
func NewDNSClient(cfg DNSConfig) (*DNSClient, error) {
	c := &DNSClient{
		timeout:   orDefault(cfg.Timeout, DefaultTimeout),
		minTTL:    orDefault(cfg.MinTTL, DefaultMinTTL),
		maxTTL:    orDefault(cfg.MaxTTL, DefaultMaxTTL),
		maxNegTTL: orDefault(cfg.MaxNegativeTTL, DefaultMaxNegativeTTL),
		maxFlight: orDefault(cfg.MaxInflight, DefaultMaxInflight),
		maxZone:   orDefault(cfg.MaxInflightPerZone, DefaultMaxInflightPerZone),
		clock:     cfg.Clock,
		flights:   make(map[cacheKey]*flight),
		perZone:   make(map[string]int),
	}
	switch {
	case cfg.Timeout < 0, cfg.MinTTL < 0, cfg.MaxTTL < 0, cfg.MaxNegativeTTL < 0:
		return nil, errors.New("dns: negative timeout or TTL bound")
	case cfg.Attempts < 0, cfg.MaxInflight < 0, cfg.MaxInflightPerZone < 0:
		return nil, errors.New("dns: negative attempts or in-flight bound")
	case c.maxTTL < c.minTTL || c.maxNegTTL < c.minTTL:
		return nil, errors.New("dns: maximum TTL below minimum TTL")
	}
	if c.clock == nil {
		c.clock = clock.System()
	}
	servers := cfg.Servers
	if len(servers) == 0 {
		path := cfg.ResolvConf
		if path == "" {
			path = DefaultResolvConf
		}
		rc, err := dns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("dns: reading resolvers: %w", err)
		}
		for _, s := range rc.Servers {
			servers = append(servers, net.JoinHostPort(s, rc.Port))
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("dns: no nameserver in %s", path)
		}
	}
	for _, s := range servers {
		n, err := normalizeServer(s)
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, n)
	}
	c.attempts = cfg.Attempts
	if c.attempts == 0 {
		c.attempts = max(2, len(c.servers))
	}
	switch {
	case cfg.CacheSize == 0:
		c.cache = newAnswerCache(DefaultCacheSize)
	case cfg.CacheSize > 0:
		c.cache = newAnswerCache(cfg.CacheSize)
	}
	c.udp = &dns.Client{Net: "udp", Timeout: c.timeout}
	c.tcp = &dns.Client{Net: "tcp", Timeout: c.timeout}
	c.base, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// normalizeServer turns "ip", "[ip]" or "ip:port" into "ip:port".
func normalizeServer(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), "53"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("dns: server %q: not an IP address", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("dns: server %q: bad port", s)
	}
	return net.JoinHostPort(a.String(), port), nil
}

// Servers returns the resolvers in use, as host:port.
func (c *DNSClient) Servers() []string { return slices.Clone(c.servers) }

// Query answers one question, from the cache when it can, else by joining
// or starting a query on the wire. ctx bounds only this caller's wait: the
// query itself runs with the client's own timeouts, is shared by every
// concurrent caller asking the same question, and is cached for the next
// ones even when this caller gave up.
func (c *DNSClient) Query(ctx context.Context, name string, qtype uint16) (Answer, error) {
	fqdn := strings.ToLower(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(fqdn); !ok || len(fqdn) > 254 {
		return Answer{}, fmt.Errorf("%w: %q is not a domain name", ErrDNS, name)
	}
	a, _, err := c.lookup(ctx, cacheKey{fqdn, qtype}, "", false)
	return a, err
}

// lookup is Query for a canonical key. group names the list zone whose
// in-flight bound applies ("" for none). fresh skips the cache read (the
// health check must ask the network), but still joins a running query.
// cached reports an answer from the cache rather than from a server.
func (c *DNSClient) lookup(ctx context.Context, k cacheKey, group string, fresh bool) (a Answer, cached bool, err error) {
	c.lookups.Add(1)
	if !fresh {
		if a, ok := c.cache.get(k, c.clock.Now()); ok {
			c.hits.Add(1)
			return a, true, nil
		}
	}
	f, err := c.join(k, group, fresh)
	if err != nil {
		return Answer{}, false, err
	}
	select {
	case <-f.done:
		return f.ans, f.done == closedChan, f.err
	case <-ctx.Done():
		return Answer{}, false, fmt.Errorf("%w: %s: %w", ErrDNS, question(k), ctx.Err())
	}
}

// prefetch starts the query for k unless it is cached or already running,
// and returns without waiting. Lack of a free slot silently skips it.
func (c *DNSClient) prefetch(k cacheKey, group string) {
	c.lookups.Add(1)
	if _, ok := c.cache.get(k, c.clock.Now()); ok {
		c.hits.Add(1)
		return
	}
	_, _ = c.join(k, group, false)
}

// closedChan is the done channel of flights that were answered at once.
var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// join returns the flight for k, starting one when none runs.
func (c *DNSClient) join(k cacheKey, group string, fresh bool) (*flight, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("%w: %s: %w", ErrDNS, question(k), ErrClosed)
	}
	if f := c.flights[k]; f != nil {
		c.coalesced.Add(1)
		return f, nil
	}
	// A flight that just finished stored its answer before leaving the
	// map, so looking again under the lock means every caller that
	// overlapped with it is answered by that one query.
	if !fresh {
		if a, ok := c.cache.get(k, c.clock.Now()); ok {
			c.hits.Add(1)
			return &flight{done: closedChan, ans: a}, nil
		}
	}
	if len(c.flights) >= c.maxFlight || (group != "" && c.perZone[group] >= c.maxZone) {
		c.overloaded.Add(1)
		return nil, fmt.Errorf("%w: %s: %w", ErrDNS, question(k), ErrOverloaded)
	}
	f := &flight{done: make(chan struct{})}
	c.flights[k] = f
	if group != "" {
		c.perZone[group]++
	}
	c.wg.Add(1)
	go c.run(k, group, f)
	return f, nil
}

// run performs the query for flight f, caches the answer and wakes the
// waiters.
func (c *DNSClient) run(k cacheKey, group string, f *flight) {
	defer c.wg.Done()
	ans, err := c.exchange(c.base, k)
	if err != nil {
		c.failures.Add(1)
	} else if ans.TTL > 0 {
		c.cache.put(k, ans, c.clock.Now().Add(ans.TTL))
	}
	c.mu.Lock()
	delete(c.flights, k)
	if group != "" {
		if c.perZone[group]--; c.perZone[group] <= 0 {
			delete(c.perZone, group)
		}
	}
	c.mu.Unlock()
	f.ans, f.err = ans, err
	close(f.done)
}

// RcodeError is a reply whose rcode is neither NOERROR nor NXDOMAIN.
type RcodeError struct {
	Server string
	Rcode  int
}

func (e *RcodeError) Error() string {
	return "server " + e.Server + " answered " + dns.RcodeToString[e.Rcode]
}

// exchange asks the servers in turn, starting with the preferred one, at
// most c.attempts times. Each attempt has its own deadline (miekg/dns
// honours the context's, and we always set one).
func (c *DNSClient) exchange(ctx context.Context, k cacheKey) (Answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(k.name, k.qtype)
	n := uint32(len(c.servers))
	start := c.preferred.Load()
	var lastErr error
	for i := 0; i < c.attempts; i++ {
		idx := (start + uint32(i)) % n
		srv := c.servers[idx]
		m.Id = dns.Id()
		actx, cancel := context.WithTimeout(ctx, c.timeout)
		r, err := c.exchangeOne(actx, m, srv)
		cancel()
		if err == nil {
			return c.answerFrom(r, k), nil
		}
		lastErr = err
		// Fallback: the next query starts with the next server.
		c.preferred.CompareAndSwap(idx, (idx+1)%n)
		if ctx.Err() != nil {
			break
		}
	}
	return Answer{}, fmt.Errorf("%w: %s: %w", ErrDNS, question(k), lastErr)
}

// exchangeOne asks one server over UDP, and again over TCP when the UDP
// answer is truncated (RFC 1035 §4.2.1, RFC 7766 §5).
func (c *DNSClient) exchangeOne(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	r, err := c.exchangeVia(ctx, c.udp, m, srv)
	if r != nil && r.Truncated && r.Id == m.Id {
		// A truncated reply may also fail to unpack; either way TCP
		// gets the whole answer.
		c.tcpRetries.Add(1)
		r, err = c.exchangeVia(ctx, c.tcp, m, srv)
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", srv, err)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, &RcodeError{Server: srv, Rcode: r.Rcode}
	}
	if !r.Response || len(r.Question) != 1 ||
		r.Question[0].Qtype != m.Question[0].Qtype ||
		!strings.EqualFold(r.Question[0].Name, m.Question[0].Name) {
		return nil, fmt.Errorf("server %s: reply does not match the question", srv)
	}
	return r, nil
}

// exchangeVia sends m over a new connection of cl. miekg/dns applies the
// context's deadline to the socket but does not watch for cancellation, so
// the connection is closed when ctx ends: Close then ends every query at
// once instead of after its timeout.
func (c *DNSClient) exchangeVia(ctx context.Context, cl *dns.Client, m *dns.Msg, srv string) (*dns.Msg, error) {
	c.queries.Add(1)
	conn, err := cl.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r, _, err := cl.ExchangeWithConnContext(ctx, m, conn)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return r, err
}

// answerFrom extracts the records for k from r and works out the TTL.
func (c *DNSClient) answerFrom(r *dns.Msg, k cacheKey) Answer {
	a := Answer{Rcode: r.Rcode}
	var ttl uint32
	seen := false
	use := func(h *dns.RR_Header) {
		if !seen || h.Ttl < ttl {
			ttl = h.Ttl
		}
		seen = true
	}
	if r.Rcode == dns.RcodeSuccess {
		// Follow a CNAME chain from the question name, bounded.
		target := k.name
		for hops := 0; hops < 8; hops++ {
			next := ""
			for _, rr := range r.Answer {
				h := rr.Header()
				if !strings.EqualFold(h.Name, target) {
					continue
				}
				switch v := rr.(type) {
				case *dns.CNAME:
					if k.qtype != dns.TypeCNAME && next == "" {
						next = v.Target
						use(h)
					}
				case *dns.A:
					if k.qtype == dns.TypeA {
						if ip, ok := netip.AddrFromSlice(v.A.To4()); ok {
							a.Addrs = append(a.Addrs, ip)
							use(h)
						}
					}
				case *dns.AAAA:
					if k.qtype == dns.TypeAAAA {
						if ip, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
							a.Addrs = append(a.Addrs, ip)
							use(h)
						}
					}
				case *dns.TXT:
					if k.qtype == dns.TypeTXT {
						a.Texts = append(a.Texts, unescapeTXT(strings.Join(v.Txt, "")))
						use(h)
					}
				}
			}
			if next == "" || len(a.Addrs) > 0 || len(a.Texts) > 0 {
				break
			}
			target = next
		}
		slices.SortFunc(a.Addrs, netip.Addr.Compare)
	}
	if len(a.Addrs) > 0 || len(a.Texts) > 0 {
		a.TTL = clamp(time.Duration(ttl)*time.Second, c.minTTL, c.maxTTL)
		return a
	}
	// Negative answer. RFC 2308 §5: its TTL is the minimum of the SOA
	// record's own TTL and its MINIMUM field; without an SOA in the
	// authority section it SHOULD NOT be cached.
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			neg := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			a.TTL = clamp(neg, c.minTTL, c.maxNegTTL)
			break
		}
	}
	return a
}

func clamp(d, lo, hi time.Duration) time.Duration {
	return min(max(d, lo), hi)
}

// unescapeTXT undoes miekg/dns's presentation escapes (\DDD and \X) in a
// TXT string, giving back the bytes on the wire.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b = append(b, s[i])
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// question renders k for error messages: "2.0.0.127.bl.example A".
func question(k cacheKey) string {
	t, ok := dns.TypeToString[k.qtype]
	if !ok {
		t = "TYPE" + strconv.Itoa(int(k.qtype))
	}
	return strings.TrimSuffix(k.name, ".") + " " + t
}

// Stats returns the client's counters.
func (c *DNSClient) Stats() Stats {
	c.mu.Lock()
	inflight := len(c.flights)
	c.mu.Unlock()
	return Stats{
		Lookups:      c.lookups.Load(),
		CacheHits:    c.hits.Load(),
		Coalesced:    c.coalesced.Load(),
		Queries:      c.queries.Load(),
		TCPRetries:   c.tcpRetries.Load(),
		Failures:     c.failures.Load(),
		Overloaded:   c.overloaded.Load(),
		Inflight:     inflight,
		CacheEntries: c.cache.len(),
	}
}

// Close cancels the queries in flight, waits for them to end and makes
// later lookups fail with ErrClosed. Close the stages using the client
// first.
func (c *DNSClient) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}
