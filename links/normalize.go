package links

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Why a URL was not kept. Normalize wraps these with the offending text.
var (
	// ErrRelative: the reference has no scheme and no "//" authority, so it
	// names no host of its own (RFC 3986 §4.2); a browser would resolve it
	// against the page's base, whose host is already reported.
	ErrRelative = errors.New("relative reference")
	// ErrScheme: the scheme is not http, https or ftp (mailto:, tel:,
	// javascript:, cid:, data: ...). Only web URLs have a web reputation.
	ErrScheme = errors.New("not a web URL")
	// ErrHost: the host is neither a valid DNS name nor an IP address.
	ErrHost = errors.New("invalid host")
	// ErrPort: the port is not a number from 0 to 65535; browsers refuse
	// such URLs, so nobody can follow them.
	ErrPort = errors.New("invalid port")
	// ErrNoDomain: the host is a single label ("localhost") or a public
	// suffix itself ("co.jp"), so it has no registrable domain to look up.
	ErrNoDomain = errors.New("no registrable domain")
)

// idnaProfile converts hosts to their ASCII (A-label) form the way a browser
// does before it resolves them: UTS #46 mapping for lookup (RFC 5891 §5:
// lower-casing, width folding, so "ＥＸＡＭＰＬＥ．ｃｏｍ" is example.com),
// non-transitional ("ß" stays "ß"), Bidi and ContextJ rules on. Two checks of
// idna.Lookup are relaxed on purpose, as in the WHATWG URL standard: hyphen
// positions (real hosts such as "r3---sn-abc.googlevideo.com" use them) and
// STD3 ASCII rules (real hosts contain "_"). validDNSName then enforces what
// a DNS lookup key needs.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.CheckHyphens(false),
	idna.StrictDomainName(false),
)

// parsed is a URL plus the raw pieces redirector matching needs.
type parsed struct {
	URL
	rawPath  string // path as written, "\" already turned into "/"
	rawQuery string // query as written, without "?"
}

// Normalize parses one absolute web URL and returns its normalised record
// (see URL), or an error wrapping one of ErrRelative, ErrScheme, ErrHost,
// ErrPort or ErrNoDomain. It accepts what a browser's address parser accepts
// for http, https and ftp: surrounding spaces, embedded tabs and newlines,
// backslashes and any number of slashes after the scheme, userinfo,
// percent-encoded and internationalised hosts, and the numeric IPv4 forms.
// A reference that starts with "//" is taken as http.
func Normalize(raw string) (URL, error) {
	p, err := parseURL(raw, defaultMaxURLLength)
	return p.URL, err
}

// parseURL implements Normalize; maxLen caps Original and Normalized.
func parseURL(raw string, maxLen int) (parsed, error) {
	var p parsed
	p.Original = cutString(raw, maxLen)
	s := cleanURL(raw)

	scheme, rest, ok := splitScheme(s)
	switch {
	case ok:
		scheme = strings.ToLower(scheme)
	case len(s) >= 2 && isSlash(s[0]) && isSlash(s[1]):
		// Scheme-relative ("//host/path"): mail has no base URL, and a
		// browser showing it would use http.
		scheme, rest = "http", s
	default:
		return p, ErrRelative
	}
	switch scheme {
	case "http", "https", "ftp":
	default:
		return p, fmt.Errorf("%w: %s", ErrScheme, cutString(scheme, 32))
	}
	p.Scheme = scheme

	// WHATWG URL "special authority ignore slashes": for these schemes any
	// run of "/" and "\" after the colon introduces the authority, so
	// "http:\\evil.example" and "http:/evil.example" both go to evil.example.
	rest = strings.TrimLeft(rest, `/\`)
	authority, tail := rest, ""
	if i := indexAuthorityEnd(rest); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	// RFC 3986 §3.2.1: userinfo ends at the last "@". It never identifies
	// the site, and "http://bank.example@evil.example/" is a classic
	// disguise, so it is dropped and flagged.
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
		p.Obfuscated = true
	}
	hostText, err := stripPort(authority)
	if err != nil {
		return p, err
	}
	host, ip, obf, err := parseHost(hostText)
	if err != nil {
		return p, err
	}
	p.Host, p.IP = host, ip
	p.Obfuscated = p.Obfuscated || obf
	if ip.IsValid() {
		p.Domain = ""
	} else {
		d, err := publicsuffix.EffectiveTLDPlusOne(host)
		if err != nil {
			return p, fmt.Errorf("%w: %s", ErrNoDomain, host)
		}
		p.Domain = d
	}

	// RFC 3986 §3.5: the fragment is for the user agent only.
	if i := strings.IndexByte(tail, '#'); i >= 0 {
		tail = tail[:i]
	}
	rawPath, rawQuery := tail, ""
	if i := strings.IndexByte(tail, '?'); i >= 0 {
		rawPath, rawQuery = tail[:i], tail[i+1:]
	}
	rawPath = strings.ReplaceAll(rawPath, `\`, "/")
	p.rawPath, p.rawQuery = rawPath, rawQuery

	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + 2 + len(rawPath) + 1 + len(rawQuery))
	b.WriteString(scheme)
	b.WriteString("://")
	if ip.Is6() {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if rawPath == "" {
		b.WriteByte('/')
	} else {
		escapeTo(&b, rawPath)
	}
	if rawQuery != "" {
		b.WriteByte('?')
		escapeTo(&b, rawQuery)
	}
	p.Normalized = cutEscaped(b.String(), maxLen)
	return p, nil
}

// cleanURL applies the WHATWG URL parser's input clean-up: leading and
// trailing C0 controls and spaces are removed, and ASCII tab, LF and CR are
// removed everywhere (so "ht<TAB>tp://" in an href still works in a browser,
// and must still be seen here).
func cleanURL(s string) string {
	// Byte-wise: every rune up to ' ' is one byte, and no byte of a
	// multi-byte (or invalid) sequence is below 0x80.
	for len(s) > 0 && s[0] <= ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] <= ' ' {
		s = s[:len(s)-1]
	}
	if hasTabOrNewline(s) {
		s = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, s)
	}
	return s
}

func hasTabOrNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\t' || c == '\n' || c == '\r' {
			return true
		}
	}
	return false
}

// splitScheme splits "scheme:rest" (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT /
// "+" / "-" / "." )).
func splitScheme(s string) (scheme, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return s[:i], s[i+1:], true
		default:
			return "", s, false
		}
	}
	return "", s, false
}

func isSlash(c byte) bool { return c == '/' || c == '\\' }

// stripPort removes ":port" from host[:port], accepting an empty port as
// browsers do (RFC 3986 §3.2.3 allows it too).
func stripPort(a string) (string, error) {
	var host, port string
	hasPort := false
	if strings.HasPrefix(a, "[") {
		i := strings.IndexByte(a, ']')
		if i < 0 {
			return "", fmt.Errorf("%w: %s", ErrHost, cutString(a, 64))
		}
		host, port = a[:i+1], a[i+1:]
		if port != "" {
			if port[0] != ':' {
				return "", fmt.Errorf("%w: %s", ErrHost, cutString(a, 64))
			}
			port, hasPort = port[1:], true
		}
	} else if i := strings.IndexByte(a, ':'); i >= 0 {
		host, port, hasPort = a[:i], a[i+1:], true
	} else {
		host = a
	}
	if hasPort {
		v := 0
		for i := 0; i < len(port); i++ {
			c := port[i]
			if c < '0' || c > '9' {
				return "", fmt.Errorf("%w: %s", ErrPort, cutString(port, 16))
			}
			if v = v*10 + int(c-'0'); v > 65535 {
				return "", fmt.Errorf("%w: %s", ErrPort, cutString(port, 16))
			}
		}
	}
	return host, nil
}

// parseHost turns the host as written into its lookup form: an ASCII,
// lower-case DNS name without trailing dot (RFC 5891 §5 for IDNs), or an IP
// address. obf reports a disguised host: percent-encoded, a numeric IPv4 form
// other than the dotted quad, or an IPv4-mapped IPv6 literal.
func parseHost(h string) (host string, ip netip.Addr, obf bool, err error) {
	if h == "" {
		return "", ip, false, fmt.Errorf("%w: empty", ErrHost)
	}
	if h[0] == '[' {
		// RFC 3986 §3.2.2 IP-literal. Zones ("%25eth0") are not allowed in
		// URLs by browsers and name nothing on the Internet.
		if len(h) < 2 || h[len(h)-1] != ']' {
			return "", ip, false, fmt.Errorf("%w: %s", ErrHost, cutString(h, 64))
		}
		a, perr := netip.ParseAddr(h[1 : len(h)-1])
		if perr != nil || a.Zone() != "" || !a.Is6() {
			return "", ip, false, fmt.Errorf("%w: %s", ErrHost, cutString(h, 64))
		}
		if a.Is4In6() {
			// ::ffff:a.b.c.d is where the connection really goes.
			a, obf = a.Unmap(), true
		}
		return a.String(), a, obf, nil
	}
	if strings.IndexByte(h, '%') >= 0 {
		// WHATWG host parsing percent-decodes before IDNA, so
		// "%65vil.example" is evil.example in a browser.
		h, obf = percentDecode(h), true
	}
	if !utf8.ValidString(h) {
		return "", ip, obf, fmt.Errorf("%w: not UTF-8", ErrHost)
	}
	if needsIDNA(h) {
		a, ierr := idnaProfile.ToASCII(h)
		if ierr != nil {
			return "", ip, obf, fmt.Errorf("%w: %s", ErrHost, cutString(h, 64))
		}
		h = a
	} else {
		h = lowerASCII(h)
	}
	// A single trailing dot is the DNS root (an absolute name); it names the
	// same host.
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", ip, obf, fmt.Errorf("%w: empty", ErrHost)
	}
	if endsInNumber(h) {
		a, canonical, ok := parseIPv4(h)
		if !ok {
			return "", ip, obf, fmt.Errorf("%w: %s", ErrHost, cutString(h, 64))
		}
		return a.String(), a, obf || !canonical, nil
	}
	if !validDNSName(h) {
		return "", ip, obf, fmt.Errorf("%w: %s", ErrHost, cutString(h, 64))
	}
	return h, ip, obf, nil
}

// needsIDNA reports whether h needs the IDNA profile: non-ASCII text, or an
// "xn--" label whose Punycode must be validated. Plain ASCII only needs
// lower-casing, which is much cheaper.
func needsIDNA(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= utf8.RuneSelf {
			return true
		}
		if c|0x20 == 'x' && (i == 0 || h[i-1] == '.') && i+4 <= len(h) && h[i+1]|0x20 == 'n' && h[i+2] == '-' && h[i+3] == '-' {
			return true
		}
	}
	return false
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// validDNSName checks what a DNS-list lookup key needs (RFC 1035 §2.3.4):
// total length at most 253, labels of 1 to 63 octets of letters, digits, "-"
// or "_" ("_" is not a hostname character but is used in real names and is
// valid in DNS).
func validDNSName(h string) bool {
	if len(h) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			if label++; label > 63 {
				return false
			}
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		default:
			return false
		}
	}
	return label > 0
}

// endsInNumber is the WHATWG URL "ends in a number" check: a host whose last
// label is numeric (decimal, or 0x hex) is an IPv4 address or invalid; it is
// never looked up as a name.
func endsInNumber(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	digits := true
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			digits = false
			break
		}
	}
	if digits {
		return true
	}
	_, ok := parseIPv4Number(last)
	return ok
}

// parseIPv4 is the WHATWG URL IPv4 parser, which is what browsers do with
// such hosts: one to four parts, each decimal, octal (leading 0) or hex
// (0x); the last part fills the remaining bytes. So 3232235777, 0xC0A80101,
// 0300.0250.1.1 and 192.168.257 are all 192.168.1.1. canonical reports
// whether h was already the dotted quad.
func parseIPv4(h string) (a netip.Addr, canonical bool, ok bool) {
	var nums [4]uint64
	n := 0
	for part := range strings.SplitSeq(h, ".") {
		if n == 4 {
			return a, false, false
		}
		v, ok := parseIPv4Number(part)
		if !ok || part == "" {
			return a, false, false
		}
		nums[n] = v
		n++
	}
	for i := 0; i < n-1; i++ {
		if nums[i] > 255 {
			return a, false, false
		}
	}
	if nums[n-1] >= 1<<(8*(5-n)) {
		return a, false, false
	}
	v := nums[n-1]
	for i := 0; i < n-1; i++ {
		v += nums[i] << (8 * (3 - i))
	}
	a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return a, a.String() == h, true
}

// parseIPv4Number parses one part of a WHATWG IPv4 host. Values saturate just
// above 2^32 so that overflow is still rejected by the caller's range check.
func parseIPv4Number(s string) (uint64, bool) {
	base := uint64(10)
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		s, base = s[2:], 16
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		if v = v*base + d; v > 1<<33 {
			v = 1 << 33
		}
	}
	return v, true
}

// percentDecode decodes valid %XX escapes and leaves anything else as is (a
// stray "%" then makes the host invalid, as in a browser).
func percentDecode(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			if b == nil {
				b = append(make([]byte, 0, len(s)), s[:i]...)
			}
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		if b != nil {
			b = append(b, s[i])
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// indexAuthorityEnd returns the index of the first "/", "\\", "?" or "#"
// in s, or -1: where the authority ends for the special schemes.
func indexAuthorityEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '/', '\\', '?', '#':
			return i
		}
	}
	return -1
}

// escapeTo writes s with the bytes that may not appear raw in a URI
// (RFC 3986 §2: controls, space, non-ASCII, and `"<>\^{|}`) percent-encoded,
// so that equal URLs compare equal and the result is plain ASCII. Existing
// escapes are left as they are. Runs of bytes that stay are written at once:
// escaping is rare, and this runs for every URL.
func escapeTo(b *strings.Builder, s string) {
	const hexdig = "0123456789ABCDEF"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !mustEscape[c] {
			continue
		}
		b.WriteString(s[start:i])
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
		start = i + 1
	}
	b.WriteString(s[start:])
}

// mustEscape marks the bytes escapeTo percent-encodes.
var mustEscape = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", byte(c)) >= 0
	}
	return t
}()

// cutString shortens s to at most n bytes without splitting a UTF-8
// sequence.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// cutEscaped shortens an ASCII, percent-encoded URL to at most n bytes
// without leaving half an escape at the end.
func cutEscaped(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	if i := strings.LastIndexByte(s, '%'); i >= 0 && i >= len(s)-2 {
		s = s[:i]
	}
	return s
}
