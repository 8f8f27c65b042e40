package lists

import (
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/idna"
)

// Kind names one of the five lists.
type Kind int

// The lists, in the order of Names.
const (
	ApprovedClients Kind = iota
	BlockedClients
	ApprovedSenders
	BlockedSenders
	BlockedURLs
	numKinds
)

// Names are the lists' names as the configuration, the policy's list
// condition, bundles and findings spell them, indexed by Kind.
var Names = [numKinds]string{"approved_clients", "blocked_clients", "approved_senders", "blocked_senders", "blocked_urls"}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return Names[k]
	}
	return "unknown"
}

// KindOf returns the Kind called name.
func KindOf(name string) (Kind, bool) {
	for k, n := range Names {
		if n == name {
			return Kind(k), true
		}
	}
	return 0, false
}

// Kinds returns every Kind, in order.
func Kinds() []Kind {
	return []Kind{ApprovedClients, BlockedClients, ApprovedSenders, BlockedSenders, BlockedURLs}
}

func (k Kind) isClients() bool { return k == ApprovedClients || k == BlockedClients }
func (k Kind) isSenders() bool { return k == ApprovedSenders || k == BlockedSenders }

// Set is an immutable collection of the five lists. The zero value and a
// nil *Set are empty. A Set may be a stack of layers (Combine), each built
// from one source; a lookup asks each layer in turn.
type Set struct {
	layers []*layer
}

// layer is one source's lists.
type layer struct {
	clients [2]netTable
	senders [2]senderTable
	urls    hostTable
}

// netTable holds networks as per-prefix-length maps of masked addresses:
// a lookup masks the address once per length in use and probes that map.
// IPv4 keys are uint32 (4 bytes a slot, not netip.Addr's 24).
type netTable struct {
	v4     [33]map[uint32]struct{}
	v6     [129]map[[16]byte]struct{}
	v4lens []uint8 // lengths in use, longest first
	v6lens []uint8
	n      int
}

func (t *netTable) add(p netip.Prefix, hint int) {
	bits := p.Bits()
	if p.Addr().Is4() {
		if t.v4[bits] == nil {
			t.v4[bits] = make(map[uint32]struct{}, hintFor(bits == 32, hint))
			t.v4lens = insertDesc(t.v4lens, uint8(bits))
		}
		m := t.v4[bits]
		n := len(m)
		m[v4key(p.Addr())] = struct{}{}
		t.n += len(m) - n
		return
	}
	if t.v6[bits] == nil {
		t.v6[bits] = make(map[[16]byte]struct{}, hintFor(bits == 128, hint))
		t.v6lens = insertDesc(t.v6lens, uint8(bits))
	}
	m := t.v6[bits]
	n := len(m)
	m[p.Addr().As16()] = struct{}{}
	t.n += len(m) - n
}

// hintFor pre-sizes the single-address map, where nearly all of a big
// list's entries go; growing a map of a million entries rehashes it about
// twenty times.
func hintFor(hosts bool, hint int) int {
	if hosts {
		return hint
	}
	return 0
}

func insertDesc(lens []uint8, b uint8) []uint8 {
	lens = append(lens, b)
	slices.SortFunc(lens, func(x, y uint8) int { return int(y) - int(x) })
	return lens
}

func v4key(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// lookup returns the longest network holding a.
func (t *netTable) lookup(a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		k := v4key(a)
		for _, b := range t.v4lens {
			mk := k
			if b < 32 {
				mk = k &^ (1<<(32-b) - 1)
			}
			if _, ok := t.v4[b][mk]; ok {
				return netip.PrefixFrom(a, int(b)).Masked(), true
			}
		}
		return netip.Prefix{}, false
	}
	if !a.Is6() {
		return netip.Prefix{}, false
	}
	for _, b := range t.v6lens {
		p := netip.PrefixFrom(a, int(b)).Masked()
		if _, ok := t.v6[b][p.Addr().As16()]; ok {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func (t *netTable) each(f func(string)) {
	for _, b := range t.v4lens {
		for k := range t.v4[b] {
			a := netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
			f(entryText(netip.PrefixFrom(a, int(b))))
		}
	}
	for _, b := range t.v6lens {
		for k := range t.v6[b] {
			f(entryText(netip.PrefixFrom(netip.AddrFrom16(k), int(b))))
		}
	}
}

// entryText writes a single address without its /32 or /128.
func entryText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// senderTable holds addresses, exact domains and parents of subdomains.
type senderTable struct {
	addrs   map[string]struct{} // "user@example.com"
	domains map[string]struct{} // "example.com"
	parents map[string]struct{} // "example.com" from "*.example.com"
	n       int
}

func (t *senderTable) add(m *map[string]struct{}, s string, hint int) {
	if *m == nil {
		*m = make(map[string]struct{}, hint)
	}
	n := len(*m)
	(*m)[s] = struct{}{}
	t.n += len(*m) - n
}

func (t *senderTable) lookup(addr string) (string, bool) {
	if t.n == 0 {
		return "", false
	}
	addr = canonicalAddress(addr)
	if _, ok := t.addrs[addr]; ok {
		return addr, true
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", false
	}
	d := addr[at+1:]
	if _, ok := t.domains[d]; ok {
		return d, true
	}
	if len(t.parents) == 0 {
		return "", false
	}
	for i := strings.IndexByte(d, '.'); i >= 0; {
		d = d[i+1:]
		if _, ok := t.parents[d]; ok {
			return "*." + d, true
		}
		i = strings.IndexByte(d, '.')
	}
	return "", false
}

func (t *senderTable) each(f func(string)) {
	for k := range t.addrs {
		f(k)
	}
	for k := range t.domains {
		f(k)
	}
	for k := range t.parents {
		f("*." + k)
	}
}

// canonicalAddress lower-cases an envelope address and writes an
// internationalised domain as A-labels, as entries are stored.
func canonicalAddress(a string) string {
	a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return strings.ToLower(a)
	}
	d := strings.TrimSuffix(a[at+1:], ".")
	if !isASCII(d) {
		if ad, err := idna.Lookup.ToASCII(d); err == nil {
			d = ad
		}
	}
	return strings.ToLower(a[:at+1] + d)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hostTable holds blocked URL hosts; each blocks its subdomains too.
type hostTable struct {
	hosts map[string]struct{}
	n     int
}

func (t *hostTable) add(h string, hint int) {
	if t.hosts == nil {
		t.hosts = make(map[string]struct{}, hint)
	}
	n := len(t.hosts)
	t.hosts[h] = struct{}{}
	t.n += len(t.hosts) - n
}

// lookup tries the host and each parent. Entries are never public
// suffixes (the parser refuses them), so walking past the registrable
// domain cannot match wrongly; it only costs a probe or two.
func (t *hostTable) lookup(host string) (string, bool) {
	if t.n == 0 || host == "" {
		return "", false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if looksLikeIP(host) {
		if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			s := a.Unmap().String()
			_, ok := t.hosts[s]
			return s, ok
		}
	}
	for h := host; ; {
		if _, ok := t.hosts[h]; ok {
			return h, true
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			return "", false
		}
		h = h[i+1:]
	}
}

func (t *hostTable) each(f func(string)) {
	for k := range t.hosts {
		f(k)
	}
}

// ClientApproved reports the approved_clients entry that holds a.
func (s *Set) ClientApproved(a netip.Addr) (string, bool) { return s.client(ApprovedClients, a) }

// ClientBlocked reports the blocked_clients entry that holds a.
func (s *Set) ClientBlocked(a netip.Addr) (string, bool) { return s.client(BlockedClients, a) }

func (s *Set) client(k Kind, a netip.Addr) (string, bool) {
	if s == nil || !a.IsValid() {
		return "", false
	}
	for _, l := range s.layers {
		if p, ok := l.clients[k-ApprovedClients].lookup(a); ok {
			return entryText(p), true
		}
	}
	return "", false
}

// SenderApproved reports the approved_senders entry that matches the
// envelope sender addr ("" for the null sender matches nothing).
func (s *Set) SenderApproved(addr string) (string, bool) { return s.sender(ApprovedSenders, addr) }

// SenderBlocked reports the blocked_senders entry that matches addr.
func (s *Set) SenderBlocked(addr string) (string, bool) { return s.sender(BlockedSenders, addr) }

func (s *Set) sender(k Kind, addr string) (string, bool) {
	if s == nil || addr == "" {
		return "", false
	}
	for _, l := range s.layers {
		if e, ok := l.senders[k-ApprovedSenders].lookup(addr); ok {
			return e, true
		}
	}
	return "", false
}

// URLBlocked reports the blocked_urls entry that matches a URL's host
// (lower-case A-labels, as the URL extractor normalises it, or an IP
// address): the host itself or one of its parent domains.
func (s *Set) URLBlocked(host string) (string, bool) {
	if s == nil {
		return "", false
	}
	for _, l := range s.layers {
		if e, ok := l.urls.lookup(host); ok {
			return e, true
		}
	}
	return "", false
}

// Len returns the number of distinct entries in list k (summed over
// layers).
func (s *Set) Len(k Kind) int {
	if s == nil {
		return 0
	}
	n := 0
	for _, l := range s.layers {
		n += l.len(k)
	}
	return n
}

// Empty reports whether every list is empty.
func (s *Set) Empty() bool {
	for _, k := range Kinds() {
		if s.Len(k) > 0 {
			return false
		}
	}
	return true
}

func (l *layer) len(k Kind) int {
	switch {
	case k.isClients():
		return l.clients[k-ApprovedClients].n
	case k.isSenders():
		return l.senders[k-ApprovedSenders].n
	case k == BlockedURLs:
		return l.urls.n
	}
	return 0
}

// Each calls f with every entry of list k in canonical form, in no
// particular order (an entry in two layers comes twice).
func (s *Set) Each(k Kind, f func(entry string)) {
	if s == nil {
		return
	}
	for _, l := range s.layers {
		switch {
		case k.isClients():
			l.clients[k-ApprovedClients].each(f)
		case k.isSenders():
			l.senders[k-ApprovedSenders].each(f)
		case k == BlockedURLs:
			l.urls.each(f)
		}
	}
}

// Combine returns a Set that answers from each of sets in order. It copies
// no entries, so combining the file lists with an update's is free.
func Combine(sets ...*Set) *Set {
	c := &Set{}
	for _, s := range sets {
		if s != nil {
			c.layers = append(c.layers, s.layers...)
		}
	}
	return c
}

// Change is how one list differs between two sets.
type Change struct {
	List           string
	Added, Removed int
	Old, New       int
}

// Diff counts the entries added to and removed from each list from old to
// new. It builds every entry's text, so it is meant for tools, not for the
// mail path.
func Diff(old, new *Set) []Change {
	var out []Change
	for _, k := range Kinds() {
		was := make(map[string]struct{}, old.Len(k))
		old.Each(k, func(e string) { was[e] = struct{}{} })
		c := Change{List: k.String(), Old: len(was)}
		is := make(map[string]struct{}, new.Len(k))
		new.Each(k, func(e string) {
			if _, dup := is[e]; dup {
				return
			}
			is[e] = struct{}{}
			if _, ok := was[e]; !ok {
				c.Added++
			}
		})
		c.New = len(is)
		c.Removed = c.Old - (c.New - c.Added)
		out = append(out, c)
	}
	return out
}
