package lists

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// maxReported bounds the invalid entries an error lists: a file of garbage
// should produce a readable message, not a million lines.
const maxReported = 20

// EntryError is one invalid line.
type EntryError struct {
	File string
	Line int
	Text string // the entry as written, comment and white space removed
	Msg  string
}

func (e EntryError) Error() string {
	return fmt.Sprintf("%s:%d: %q: %s", e.File, e.Line, e.Text, e.Msg)
}

// ParseError lists the invalid entries of one or more files (at most 20;
// Omitted counts the rest).
type ParseError struct {
	Entries []EntryError
	Omitted int
}

func (e *ParseError) Error() string {
	var b strings.Builder
	for i, x := range e.Entries {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(x.Error())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "; and %d more invalid entries", e.Omitted)
	}
	return b.String()
}

// Builder collects list files into a Set. It is not safe for concurrent
// use; Set may be called once.
type Builder struct {
	l    *layer
	errs ParseError
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder { return &Builder{l: &layer{}} }

// AddFile reads the list file at path into list k.
func (b *Builder) AddFile(k Kind, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b.AddBytes(k, path, data)
	return nil
}

// AddReader reads a list file's content from r into list k; name is used
// in error messages.
func (b *Builder) AddReader(k Kind, name string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b.AddBytes(k, name, data)
	return nil
}

// AddBytes parses a list file's content into list k; name is used in error
// messages. Invalid entries are collected and reported by Set.
func (b *Builder) AddBytes(k Kind, name string, data []byte) {
	// Sizing the maps for the whole file up front is what makes a million
	// entries load in a fraction of a second (no rehashing as they grow).
	hint := bytes.Count(data, []byte{'\n'}) + 1
	// One string for the whole file, and entries are substrings of it:
	// no allocation per line. The stored entries keep it alive, which
	// costs no more than a string per entry would (only comments ride
	// along).
	rest := string(data)
	line := 0
	for len(rest) > 0 {
		line++
		var raw string
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			raw, rest = rest[:i], rest[i+1:]
		} else {
			raw, rest = rest, ""
		}
		text := entryOf(raw)
		if text == "" {
			continue
		}
		if msg := b.add(k, text, hint); msg != "" {
			b.fail(EntryError{File: name, Line: line, Text: clip(text), Msg: msg})
		}
	}
}

func (b *Builder) fail(e EntryError) {
	if len(b.errs.Entries) < maxReported {
		b.errs.Entries = append(b.errs.Entries, e)
	} else {
		b.errs.Omitted++
	}
}

// Set returns the lists built, or a *ParseError naming every invalid entry
// (up to 20): one bad line refuses the whole set, because a list with a
// line silently dropped could let through what it was meant to stop.
func (b *Builder) Set() (*Set, error) {
	if len(b.errs.Entries) > 0 {
		errs := b.errs
		return nil, &errs
	}
	return &Set{layers: []*layer{b.l}}, nil
}

// entryOf strips a comment ('#' at the start or after white space) and
// surrounding white space.
func entryOf(raw string) string {
	for i := 0; i < len(raw); i++ {
		if raw[i] == '#' && (i == 0 || raw[i-1] == ' ' || raw[i-1] == '\t') {
			raw = raw[:i]
			break
		}
	}
	return strings.TrimSpace(raw)
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// add returns why text is not a valid entry for list k, or "".
func (b *Builder) add(k Kind, text string, hint int) string {
	switch {
	case k.isClients():
		p, msg := parseClient(text)
		if msg != "" {
			return msg
		}
		b.l.clients[k-ApprovedClients].add(p, hint)
	case k.isSenders():
		t := &b.l.senders[k-ApprovedSenders]
		kind, v, msg := parseSender(text)
		if msg != "" {
			return msg
		}
		switch kind {
		case 'a':
			t.add(&t.addrs, v, hint)
		case 'd':
			t.add(&t.domains, v, 0)
		case 'p':
			t.add(&t.parents, v, 0)
		}
	case k == BlockedURLs:
		h, msg := parseURLHost(text)
		if msg != "" {
			return msg
		}
		b.l.urls.add(h, hint)
	default:
		return "unknown list"
	}
	return ""
}

func parseClient(s string) (netip.Prefix, string) {
	if strings.ContainsRune(s, '/') {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, "not an IP address or CIDR network"
		}
		if p.Addr().Is4In6() {
			return p, "IPv4-mapped IPv6 network: write the IPv4 network"
		}
		if m := p.Masked(); m != p {
			return p, fmt.Sprintf("host bits set (did you mean %s?)", m)
		}
		return p, ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, "not an IP address or CIDR network"
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), ""
}

// parseSender classifies a sender entry: 'a' address, 'd' domain, 'p'
// parent (subdomains of the domain).
func parseSender(s string) (kind byte, v string, msg string) {
	if strings.ContainsAny(s, " \t<>\"") {
		return 0, "", "not an address or domain (no spaces, quotes or angle brackets)"
	}
	if at := strings.LastIndexByte(s, '@'); at > 0 {
		d, ok := canonicalDomain(s[at+1:])
		if !ok {
			return 0, "", "invalid domain after @"
		}
		return 'a', strings.ToLower(s[:at]) + "@" + d, ""
	}
	s = strings.TrimPrefix(s, "@")
	kind = 'd'
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		s, kind = rest, 'p'
	} else if rest, ok := strings.CutPrefix(s, "."); ok {
		s, kind = rest, 'p'
	}
	d, ok := canonicalDomain(s)
	if !ok {
		return 0, "", "not an address or domain"
	}
	return kind, d, ""
}

// canonicalDomain lower-cases a domain and writes it as A-labels.
func canonicalDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || strings.Contains(d, "..") {
		return "", false
	}
	if plainLDH(d) {
		// The common case, and the one a million-entry list is made of:
		// idna would only lower-case it.
		return strings.ToLower(d), len(d) <= 253
	}
	ad, err := idna.Lookup.ToASCII(d)
	if err != nil {
		// Lookup's profile refuses '_' which real host names in mail
		// domains do not use; hosts in URLs are checked separately.
		return "", false
	}
	for _, l := range strings.Split(ad, ".") {
		if l == "" || len(l) > 63 {
			return "", false
		}
	}
	return ad, true
}

// plainLDH reports whether d is letters, digits, hyphens and dots only,
// with no label that starts or ends with a hyphen, is longer than 63
// bytes, or is Punycode (which idna must check).
func plainLDH(d string) bool {
	start := 0
	for i := 0; i <= len(d); i++ {
		if i < len(d) && d[i] != '.' {
			c := d[i] | 0x20
			if !(c >= 'a' && c <= 'z' || d[i] >= '0' && d[i] <= '9' || d[i] == '-') {
				return false
			}
			continue
		}
		l := d[start:i]
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' || len(l) >= 4 && (l[:4] == "xn--" || l[:4] == "XN--") {
			return false
		}
		start = i + 1
	}
	return true
}

// looksLikeIP is a cheap filter before netip's parser: a host name's last
// label is never all digits, and a name has no ':'.
func looksLikeIP(s string) bool {
	if strings.ContainsAny(s, ":[") {
		return true
	}
	i := strings.LastIndexByte(s, '.')
	return i >= 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9'
}

var errPublicSuffix = errors.New("a public suffix (com, co.uk...): it would block a whole TLD")

// parseURLHost returns the host an entry blocks.
func parseURLHost(s string) (string, string) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Hostname() == "" {
			return "", "not a URL, host or domain"
		}
		s = u.Hostname()
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "*."), ".")
	if looksLikeIP(s) {
		if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil && a.Zone() == "" {
			return a.Unmap().String(), ""
		}
	}
	if !plainLDH(s) && strings.ContainsAny(s, "/:@ \t") {
		return "", "not a URL, host or domain"
	}
	d, ok := canonicalDomain(s)
	if !ok {
		return "", "not a URL, host or domain"
	}
	if ps, _ := publicsuffix.PublicSuffix(d); ps == d {
		return "", errPublicSuffix.Error()
	}
	return d, ""
}
