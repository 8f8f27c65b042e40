package reputation

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Errors about a list's answer (as opposed to ErrDNS, the resolver's).
var (
	// ErrRefused means the list answered from 127.255.255.0/24: the
	// query was refused (Spamhaus uses these for "public resolver",
	// "rate-limited", "typo in the zone name"). It is not a listing.
	ErrRefused = errors.New("dnsxl refused the query")
	// ErrBadAnswer means the list answered an address outside
	// 127.0.0.0/8 (RFC 5782 §2.3), typically a resolver that rewrites
	// NXDOMAIN into an advertising page. It is not a listing.
	ErrBadAnswer = errors.New("dnsxl answer outside 127.0.0.0/8")
	// ErrHealthCheck means a zone failed its RFC 5782 §5 test points.
	ErrHealthCheck = errors.New("dnsxl health check failed")
)

// CategoryListed is the category of an answer code that the zone's Codes
// do not map: the listing is reported, never dropped.
const CategoryListed = "listed"

// MaxReasonLen bounds a TXT reason, in bytes.
const MaxReasonLen = 200

// Zone is one DNS list.
type Zone struct {
	// Name is the list's DNS zone, e.g. "zen.spamhaus.org".
	Name string
	// Codes maps answer addresses (127.0.0.x) to category names, e.g.
	// 127.0.0.2 → "spam". An answer not in the map is CategoryListed.
	Codes map[netip.Addr]string
	// TXT asks for the TXT record of a listed entry, the reason text.
	TXT bool
}

// canonicalZone is the zone name in lower case without the final dot.
func canonicalZone(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

var (
	loopback8  = netip.MustParsePrefix("127.0.0.0/8")
	refused24  = netip.MustParsePrefix("127.255.255.0/24")
	testListed = netip.AddrFrom4([4]byte{127, 0, 0, 2})
	testClean  = netip.AddrFrom4([4]byte{127, 0, 0, 1})
)

// Validate reports the first problem with z: a name that is not a DNS name,
// a code that is not an address in 127.0.0.0/8 a list may answer, an empty
// category.
func (z Zone) Validate() error {
	name := canonicalZone(z.Name)
	// An IPv6 query name adds 64 bytes; the whole must fit in 253.
	if _, ok := dns.IsDomainName(name); !ok || name == "" || strings.HasPrefix(name, ".") || len(name) > 253-64 || !hostnameSyntax(name) {
		return fmt.Errorf("zone %q: not a valid DNS name", z.Name)
	}
	for code, cat := range z.Codes {
		if !code.Is4() || !loopback8.Contains(code) || refused24.Contains(code) {
			return fmt.Errorf("zone %s: code %s: not an answer address in 127.0.0.0/8 (outside 127.255.255.0/24)", name, code)
		}
		if strings.TrimSpace(cat) == "" {
			return fmt.Errorf("zone %s: code %s: empty category", name, code)
		}
	}
	return nil
}

// hostnameSyntax checks that every label is letters, digits, '-' and '_'
// (RFC 1123 host names, plus the underscore some lists use): DNS itself
// allows any byte in a label, but a zone name with a space or '!' is a typo.
func hostnameSyntax(name string) bool {
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ParseCodes turns a configuration's code map ("127.0.0.2" → "spam") into
// Zone.Codes, naming the first key that is not an IPv4 address.
func ParseCodes(codes map[string]string) (map[netip.Addr]string, error) {
	out := make(map[netip.Addr]string, len(codes))
	for k, v := range codes {
		a, err := netip.ParseAddr(strings.TrimSpace(k))
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("code %q: not an IPv4 address", k)
		}
		out[a] = v
	}
	return out, nil
}

// QueryNameIP returns the name under zone that holds ip's entry (RFC 5782
// §2.1, §2.4): an IPv4 address as its four octets reversed, an IPv6 address
// as its 32 nibbles reversed (no "ip6.arpa"). An IPv4-mapped IPv6 address
// is an IPv4 address.
func QueryNameIP(ip netip.Addr, zone string) (string, error) {
	n, err := ipQueryName(ip, canonicalZone(zone))
	return strings.TrimSuffix(n, "."), err
}

// ipQueryName builds the fully qualified query name; zone is canonical.
func ipQueryName(ip netip.Addr, zone string) (string, error) {
	if !ip.IsValid() {
		return "", errors.New("invalid IP address")
	}
	ip = ip.Unmap().WithZone("")
	var b []byte
	if ip.Is4() {
		b = make([]byte, 0, 16+len(zone)+1)
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			b = strconv.AppendUint(b, uint64(a[i]), 10)
			b = append(b, '.')
		}
	} else {
		const hex = "0123456789abcdef"
		b = make([]byte, 0, 64+len(zone)+1)
		a := ip.As16()
		for i := 15; i >= 0; i-- {
			b = append(b, hex[a[i]&0xf], '.', hex[a[i]>>4], '.')
		}
	}
	b = append(b, zone...)
	b = append(b, '.')
	return string(b), nil
}

// QueryNameDomain returns the name under zone that holds domain's entry
// (RFC 5782 §2.2): "<domain>.<zone>". domain must already be in ASCII
// (A-labels).
func QueryNameDomain(domain, zone string) (string, error) {
	n, err := domainQueryName(domain, canonicalZone(zone))
	return strings.TrimSuffix(n, "."), err
}

func domainQueryName(domain, zone string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	n := d + "." + zone + "."
	ok := d != "" && !strings.HasPrefix(d, ".") && len(n) <= 254
	for i := 0; ok && i < len(d); i++ {
		// Host names in A-label form only (letters, digits, '-', '_'):
		// no escapes, no spaces, nothing a zone file would quote.
		c := d[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if _, valid := dns.IsDomainName(n); !ok || !valid {
		return "", fmt.Errorf("%q: not a valid domain name under %s", domain, zone)
	}
	return n, nil
}

// Result is what one zone says about one IP address or domain.
type Result struct {
	// Zone is the list asked, Query the name looked up.
	Zone, Query string
	// Listed is true when the list has an entry.
	Listed bool
	// Codes are the answer addresses, sorted; empty unless Listed.
	Codes []netip.Addr
	// Categories are the codes' categories, sorted, without duplicates;
	// CategoryListed for a code the zone does not map.
	Categories []string
	// Reason is the listing's TXT record, sanitised to one line of
	// printable ASCII of at most MaxReasonLen bytes; "" unless Listed,
	// Zone.TXT is set and the TXT lookup answered.
	Reason string
}

// LookupIP asks zone z about ip. A listing is a Result, not an error; the
// error wraps ErrDNS when the question could not be answered, ErrRefused or
// ErrBadAnswer when the list's answer is not a listing.
func LookupIP(ctx context.Context, c *DNSClient, z Zone, ip netip.Addr) (Result, error) {
	zone := canonicalZone(z.Name)
	name, err := ipQueryName(ip, zone)
	if err != nil {
		return Result{Zone: zone}, fmt.Errorf("%w: %w", ErrDNS, err)
	}
	res, _, err := lookupName(ctx, c, z, zone, name, false)
	return res, err
}

// LookupDomain asks domain list z about domain, like LookupIP.
func LookupDomain(ctx context.Context, c *DNSClient, z Zone, domain string) (Result, error) {
	zone := canonicalZone(z.Name)
	name, err := domainQueryName(domain, zone)
	if err != nil {
		return Result{Zone: zone}, fmt.Errorf("%w: %w", ErrDNS, err)
	}
	res, _, err := lookupName(ctx, c, z, zone, name, false)
	return res, err
}

// lookupName does the A lookup, classifies the codes (RFC 5782 §2.3) and,
// when listed and asked to, fetches the TXT reason. A failed TXT lookup
// leaves Reason empty: the listing stands. network reports that the A
// answer came from a server now, not from the cache.
func lookupName(ctx context.Context, c *DNSClient, z Zone, zone, name string, fresh bool) (res Result, network bool, err error) {
	res = Result{Zone: zone, Query: strings.TrimSuffix(name, ".")}
	a, cached, err := c.lookup(ctx, cacheKey{name, dns.TypeA}, zone, fresh)
	if err != nil {
		return res, false, err
	}
	network = !cached
	if len(a.Addrs) == 0 {
		return res, network, nil
	}
	for _, code := range a.Addrs {
		switch {
		case !code.Is4() || !loopback8.Contains(code):
			return res, network, fmt.Errorf("%w: %s answered %s", ErrBadAnswer, res.Query, code)
		case refused24.Contains(code):
			return res, network, fmt.Errorf("%w: %s answered %s", ErrRefused, res.Query, code)
		}
	}
	res.Listed = true
	res.Codes = slices.Clone(a.Addrs)
	res.Categories = make([]string, 0, len(a.Addrs))
	for _, code := range a.Addrs {
		cat := z.Codes[code]
		if cat == "" {
			cat = CategoryListed
		}
		res.Categories = append(res.Categories, cat)
	}
	slices.Sort(res.Categories)
	res.Categories = slices.Compact(res.Categories)
	if z.TXT {
		// The listing is known; wait for its reason no longer than one
		// attempt, so a slow TXT answer cannot use up a message's budget.
		tctx, cancel := context.WithTimeout(ctx, c.timeout)
		t, _, err := c.lookup(tctx, cacheKey{name, dns.TypeTXT}, zone, fresh)
		cancel()
		if err == nil && len(t.Texts) > 0 {
			// The smallest of several records, so the reason does not
			// depend on the order the server sent them in.
			res.Reason = SanitizeReason(slices.Min(t.Texts))
		}
	}
	return res, network, nil
}

// CheckHealth runs the RFC 5782 §5 test points against the IP list z,
// bypassing the cache: 127.0.0.2 must be listed and 127.0.0.1 must not. A
// nil error means the list and the path to it work.
func CheckHealth(ctx context.Context, c *DNSClient, z Zone) error {
	zone := canonicalZone(z.Name)
	type out struct {
		res Result
		err error
	}
	probe := func(ip netip.Addr) out {
		name, _ := ipQueryName(ip, zone)
		zz := z
		zz.TXT = false
		r, _, err := lookupName(ctx, c, zz, zone, name, true)
		return out{r, err}
	}
	ch := make(chan out, 1)
	go func() { ch <- probe(testClean) }()
	listed := probe(testListed)
	clean := <-ch
	switch {
	case listed.err != nil:
		return fmt.Errorf("%w: %s: test point 127.0.0.2: %w", ErrHealthCheck, zone, listed.err)
	case !listed.res.Listed:
		return fmt.Errorf("%w: %s: test point 127.0.0.2 is not listed", ErrHealthCheck, zone)
	case clean.err != nil:
		return fmt.Errorf("%w: %s: test point 127.0.0.1: %w", ErrHealthCheck, zone, clean.err)
	case clean.res.Listed:
		return fmt.Errorf("%w: %s: test point 127.0.0.1 is listed (the list or a resolver answers every name)", ErrHealthCheck, zone)
	}
	return nil
}

// SanitizeReason makes a TXT reason safe to show in a log line or an SMTP
// reply: control characters and runs of white space become one space,
// anything outside printable ASCII becomes '?', and the result is trimmed
// and cut to MaxReasonLen bytes.
func SanitizeReason(s string) string {
	var b strings.Builder
	b.Grow(min(len(s), MaxReasonLen))
	space := false
	for _, r := range s {
		if b.Len() >= MaxReasonLen {
			break
		}
		switch {
		case r <= ' ' || r == 0x7f:
			space = b.Len() > 0
			continue
		case r > '~':
			r = '?'
		}
		if space {
			if b.Len()+1 >= MaxReasonLen {
				break
			}
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(byte(r))
	}
	return b.String()
}
