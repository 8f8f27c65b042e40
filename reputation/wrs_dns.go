package reputation

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/links"
)

// DefaultTestPoint is the name every domain list must list (RFC 5782 §5),
// and invalidTestPoint the one it must not.
const (
	DefaultTestPoint = "test"
	invalidTestPoint = "invalid"
)

// maxKeyWorkers bounds the concurrent lookups of one zone for one message.
// The DNS client bounds what is outstanding overall; this only keeps a
// message with fifty new domains from starting fifty goroutines per zone.
const maxKeyWorkers = 8

// DNSZone is one DNS URI block list (URIBL, SURBL, Spamhaus DBL style):
// "<domain>.<zone>" and, for IP-literal URLs, "<reversed octets>.<zone>"
// are asked for A records (RFC 5782 §2.1, §2.2).
type DNSZone struct {
	// Name is the list's zone, e.g. "multi.surbl.org".
	Name string
	// Codes maps whole answer addresses to categories, as for ERS: e.g.
	// 127.0.1.2 → "spam". An answer not in the map is CategoryListed.
	Codes map[netip.Addr]string
	// Bitmask makes the zone a bitmask list (SURBL, URIBL): each bit of
	// the last octet of a 127.0.0.X answer is one list, and this maps bit
	// values (powers of two, 1 to 128) to categories, e.g. {8: "phish",
	// 16: "malware", 64: "spam"}. Set bits that are not mapped are
	// ignored (SURBL: "reserved for future use"); an answer with none of
	// the mapped bits is CategoryListed, except 127.0.0.1, which URIBL
	// answers when it refuses a resolver (ErrRefused, not a listing).
	// Codes and Bitmask are exclusive.
	Bitmask map[int]string
	// SkipIPs leaves IP-literal URLs out. Set it for lists that hold
	// domains only: Spamhaus DBL answers 127.0.1.255 ("IP queries
	// prohibited") to them, which would read as a listing.
	SkipIPs bool
	// TestPoint is the name under the zone that the breaker's probe
	// expects to be listed (default "test", RFC 5782 §5; "invalid" must
	// not be). Lists that publish another one set it here, e.g.
	// "dbltest.com" for Spamhaus DBL or "test.surbl.org" for SURBL.
	// rbldnsd's dnset lists "test" only when the data file has a "test"
	// line.
	TestPoint string
}

// Validate reports the first problem with z: a bad zone name or code (see
// Zone.Validate), a bad bitmask (see ValidateBitmask), both codes and a
// bitmask, a category that is empty or holds a comma or white space, a
// test point that is not a domain name.
func (z DNSZone) Validate() error {
	if err := (Zone{Name: z.Name, Codes: z.Codes}).Validate(); err != nil {
		return err
	}
	name := canonicalZone(z.Name)
	if len(z.Codes) > 0 && len(z.Bitmask) > 0 {
		return fmt.Errorf("zone %s: codes and bitmask are exclusive", name)
	}
	for code, cat := range z.Codes {
		if err := validCategory(cat); err != nil {
			return fmt.Errorf("zone %s: code %s: %w", name, code, err)
		}
	}
	if err := ValidateBitmask(z.Bitmask); err != nil {
		return fmt.Errorf("zone %s: %w", name, err)
	}
	if z.TestPoint != "" {
		if _, err := domainQueryName(z.TestPoint, name); err != nil {
			return fmt.Errorf("zone %s: test point: %w", name, err)
		}
	}
	return nil
}

// ValidateBitmask reports the first problem with a bitmask zone's map, in
// order of bit value: a key that is not a power of two from 1 to 128 (one
// bit of the answer's last octet), or a bad category.
func ValidateBitmask(bits map[int]string) error {
	keys := make([]int, 0, len(bits))
	for k := range bits {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k < 1 || k > 128 || k&(k-1) != 0 {
			return fmt.Errorf("bitmask: %d is not a single bit of the last octet (1, 2, 4, ..., 128)", k)
		}
		if err := validCategory(bits[k]); err != nil {
			return fmt.Errorf("bitmask: bit %d: %w", k, err)
		}
	}
	return nil
}

// validCategory: categories are joined with "," in pipeline.Item.Category
// and the trace header, so they cannot hold one.
func validCategory(c string) error {
	switch {
	case c == "":
		return errors.New("empty category")
	case strings.ContainsFunc(c, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }):
		return fmt.Errorf("category %q holds a comma or white space", c)
	}
	return nil
}

type bitCategory struct {
	bit byte
	cat string
}

// dnsList is the Backend of one DNSZone.
type dnsList struct {
	client    *DNSClient
	zone      Zone // canonical name; Codes unless a bitmask list
	bits      []bitCategory
	skipIPs   bool
	testPoint string
}

var _ Backend = (*dnsList)(nil)

// NewDNSListBackend returns the Backend for the DNS URI block list z,
// asking through c (shared with ERS: one cache, one set of in-flight
// bounds).
func NewDNSListBackend(c *DNSClient, z DNSZone) (Backend, error) {
	if c == nil {
		return nil, errors.New("no DNS client")
	}
	if err := z.Validate(); err != nil {
		return nil, err
	}
	d := &dnsList{
		client:    c,
		zone:      Zone{Name: canonicalZone(z.Name)},
		skipIPs:   z.SkipIPs,
		testPoint: strings.ToLower(strings.TrimSuffix(z.TestPoint, ".")),
	}
	if d.testPoint == "" {
		d.testPoint = DefaultTestPoint
	}
	if len(z.Codes) > 0 {
		d.zone.Codes = make(map[netip.Addr]string, len(z.Codes))
		for k, v := range z.Codes {
			d.zone.Codes[k] = v
		}
	}
	for bit, cat := range z.Bitmask {
		d.bits = append(d.bits, bitCategory{byte(bit), cat})
	}
	slices.SortFunc(d.bits, func(a, b bitCategory) int { return int(a.bit) - int(b.bit) })
	return d, nil
}

func (d *dnsList) Name() string { return d.zone.Name }

// keyOutcome is one key's answer.
type keyOutcome struct {
	asked   bool // false: the key has no query name under this zone
	cats    []string
	network bool
	err     error
}

// Lookup implements Backend: every key of q, the registrable domain and
// (where different) the full host of each URL, and IP literals unless
// SkipIPs. Answers in the DNS client's cache are taken first, in the
// caller's goroutine; only the misses go out, a few at a time.
func (d *dnsList) Lookup(ctx context.Context, q *Query) (BackendResult, error) {
	keys := q.Keys
	names := make([]string, len(keys))
	outs := make([]keyOutcome, len(keys))
	var misses []int
	now := d.client.clock.Now()
	for i, k := range keys {
		var err error
		switch {
		case k.Kind == links.KeyIP && d.skipIPs:
			continue
		case k.Kind == links.KeyIP:
			names[i], err = ipQueryName(k.IP, d.zone.Name)
		default:
			names[i], err = domainQueryName(k.Name, d.zone.Name)
		}
		if err != nil {
			// Too long once the zone is appended: no list can hold it,
			// so there is nothing to ask and nothing failed.
			continue
		}
		if _, ok := d.client.cache.get(cacheKey{names[i], dns.TypeA}, now); ok {
			outs[i] = d.lookupName(ctx, names[i])
		} else {
			misses = append(misses, i)
		}
	}
	if len(misses) == 1 {
		outs[misses[0]] = d.lookupName(ctx, names[misses[0]])
	} else if len(misses) > 1 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		next := 0
		for range min(len(misses), maxKeyWorkers) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					if next == len(misses) {
						mu.Unlock()
						return
					}
					i := misses[next]
					next++
					mu.Unlock()
					outs[i] = d.lookupName(ctx, names[i])
				}
			}()
		}
		wg.Wait()
	}

	res := BackendResult{Cached: true}
	var firstErr error
	failed, asked := 0, 0
	for i, o := range outs {
		if !o.asked {
			continue
		}
		asked++
		switch {
		case o.err != nil:
			failed++
			if firstErr == nil {
				firstErr = o.err
			}
		case len(o.cats) > 0:
			res.Hits = append(res.Hits, Hit{What: keys[i].Name, Kind: keys[i].Kind, Categories: o.cats})
		}
		if o.network {
			res.Cached = false
		}
	}
	if failed > 0 {
		return res, fmt.Errorf("%d of %d lookups failed, first: %w", failed, asked, firstErr)
	}
	return res, nil
}

// lookupName asks for one name and maps its answer to categories.
func (d *dnsList) lookupName(ctx context.Context, name string) keyOutcome {
	res, network, err := lookupName(ctx, d.client, d.zone, d.zone.Name, name, false)
	o := keyOutcome{asked: true, network: network, err: err}
	if err == nil && res.Listed {
		o.cats, o.err = d.categories(res)
	}
	return o
}

// categories maps a listing to its categories: the zone's Codes (done by
// lookupName) or, for a bitmask list, the bits of the last octet.
func (d *dnsList) categories(res Result) ([]string, error) {
	if d.bits == nil {
		return res.Categories, nil
	}
	var last byte
	for _, c := range res.Codes {
		last |= c.As4()[3]
	}
	var cats []string
	for _, b := range d.bits {
		if last&b.bit != 0 {
			cats = append(cats, b.cat)
		}
	}
	if len(cats) == 0 {
		if last == 1 {
			return nil, fmt.Errorf("%w: %s answered 127.0.0.1 (a bitmask list's \"query blocked\")", ErrRefused, res.Query)
		}
		return []string{CategoryListed}, nil
	}
	slices.Sort(cats)
	return slices.Compact(cats), nil
}

// Probe implements Backend with the RFC 5782 §5 test points of a domain
// list: TestPoint must be listed (and map to a category, so a list that
// refuses this resolver fails) and "invalid" must not be. Both bypass the
// cache.
func (d *dnsList) Probe(ctx context.Context) error {
	return probeDomainList(ctx, d.client, d.zone.Name, d.testPoint, func(ctx context.Context, name string, fresh bool) (bool, error) {
		res, _, err := lookupName(ctx, d.client, d.zone, d.zone.Name, name, fresh)
		if err != nil || !res.Listed {
			return false, err
		}
		_, err = d.categories(res)
		return err == nil, err
	})
}

// CheckHealthDomain runs the RFC 5782 §5 test points against the domain
// list z, bypassing the cache: testPoint (default "test") must be listed
// and "invalid" must not be. A nil error means the list and the path to
// it work. It is CheckHealth for lists of domains.
func CheckHealthDomain(ctx context.Context, c *DNSClient, z Zone, testPoint string) error {
	if testPoint == "" {
		testPoint = DefaultTestPoint
	}
	zone := canonicalZone(z.Name)
	return probeDomainList(ctx, c, zone, testPoint, func(ctx context.Context, name string, fresh bool) (bool, error) {
		res, _, err := lookupName(ctx, c, Zone{Name: zone}, zone, name, fresh)
		return res.Listed, err
	})
}

// probeDomainList asks for both test points at once; listed reports
// whether a name is listed.
func probeDomainList(ctx context.Context, c *DNSClient, zone, testPoint string,
	listed func(ctx context.Context, name string, fresh bool) (bool, error)) error {
	pos, err := domainQueryName(testPoint, zone)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrHealthCheck, zone, err)
	}
	neg, _ := domainQueryName(invalidTestPoint, zone)
	type out struct {
		listed bool
		err    error
	}
	ch := make(chan out, 1)
	go func() {
		l, err := listed(ctx, neg, true)
		ch <- out{l, err}
	}()
	posListed, posErr := listed(ctx, pos, true)
	inv := <-ch
	tp := strings.TrimSuffix(pos, ".")
	switch {
	case posErr != nil:
		return fmt.Errorf("%w: %s: test point %s: %w", ErrHealthCheck, zone, tp, posErr)
	case !posListed:
		return fmt.Errorf("%w: %s: test point %s is not listed (RFC 5782 §5; set the zone's test point if the list uses another name)", ErrHealthCheck, zone, tp)
	case inv.err != nil:
		return fmt.Errorf("%w: %s: test point %s: %w", ErrHealthCheck, zone, strings.TrimSuffix(neg, "."), inv.err)
	case inv.listed:
		return fmt.Errorf("%w: %s: %s is listed (the list or a resolver answers every name)", ErrHealthCheck, zone, strings.TrimSuffix(neg, "."))
	}
	return nil
}
