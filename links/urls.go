package links

import (
	"cmp"
	"io"
	"net/netip"
	"slices"
)

// Limits bound the work done on one message. A zero or negative field means
// the default. Every limit that is reached adds a note and sets
// Result.Truncated.
type Limits struct {
	// MaxURLs is the number of distinct URLs kept, after normalisation and
	// de-duplication (default 50). Reaching it stops the extraction.
	MaxURLs int
	// MaxURLsPerHost is the number of distinct URLs kept per host (default
	// 10). Further URLs of that host add no lookup key, so they are skipped
	// without using up MaxURLs; this stops a message from hiding its real
	// link behind fifty links to one innocent site. (Fifty innocent hosts
	// still can: then Truncated is set.)
	MaxURLsPerHost int
	// MaxParts is the number of MIME entities visited, containers included
	// (default 100). Reaching it stops the extraction.
	MaxParts int
	// MaxDepth is how deep multiparts and attached messages may nest
	// (default 10). Deeper entities are skipped; their siblings are not.
	MaxDepth int
	// MaxBytes is the number of decoded text bytes examined, over all parts
	// (default 4 MiB). Reaching it stops the extraction.
	MaxBytes int64
	// MaxInputBytes is the number of raw message bytes read from the reader
	// (default 64 MiB; one more byte is read to tell a message of exactly
	// that size from a longer one). Reaching it stops the extraction.
	MaxInputBytes int64
	// MaxHeaderBytes bounds the header of a multipart body part (default
	// 64 KiB): go-message keeps all of it in memory, at up to 80 bytes per
	// byte. An oversized part header ends the structured walk of its
	// multipart; what follows is read as plain text. Message headers
	// (top-level and attached) are read keeping only their MIME fields, so
	// their size costs no memory and has no limit of its own.
	MaxHeaderBytes int
	// MaxURLLength caps URL.Original and URL.Normalized (default 2048,
	// minimum 512 so that a host is never cut).
	MaxURLLength int
}

// Defaults.
const (
	defaultMaxURLs        = 50
	defaultMaxURLsPerHost = 10
	defaultMaxParts       = 100
	defaultMaxDepth       = 10
	defaultMaxBytes       = 4 << 20
	defaultMaxInputBytes  = 64 << 20
	defaultMaxHeaderBytes = 64 << 10
	defaultMaxURLLength   = 2048
	minMaxURLLength       = 512
	maxNotes              = 20
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxURLs, defaultMaxURLs)
	def(&l.MaxURLsPerHost, defaultMaxURLsPerHost)
	def(&l.MaxParts, defaultMaxParts)
	def(&l.MaxDepth, defaultMaxDepth)
	def64(&l.MaxBytes, defaultMaxBytes)
	def64(&l.MaxInputBytes, defaultMaxInputBytes)
	def(&l.MaxHeaderBytes, defaultMaxHeaderBytes)
	def(&l.MaxURLLength, defaultMaxURLLength)
	l.MaxURLLength = max(l.MaxURLLength, minMaxURLLength)
	return l
}

// Config configures an Extractor.
type Config struct {
	Limits Limits
	// Redirectors whose targets are reported as well (nil: none; see
	// DefaultRedirectors).
	Redirectors []Redirector
	// StrictText, when set, takes only URLs written with a scheme from
	// text. By default text also yields "www.example.com" and
	// "example.com/path" (see the package documentation).
	StrictText bool
}

// Extractor finds the URLs in messages. It is immutable and safe for
// concurrent use.
type Extractor struct {
	lim        Limits
	redir      redirectors
	redirList  []Redirector // as configured, for Same
	schemeless bool
	// slowMIME turns the multipart fast path off, for tests that compare
	// it with the go-message path.
	slowMIME bool
}

// New returns an Extractor, or an error if a redirector is malformed.
func New(cfg Config) (*Extractor, error) {
	rs, err := compileRedirectors(cfg.Redirectors)
	if err != nil {
		return nil, err
	}
	return &Extractor{lim: cfg.Limits.withDefaults(), redir: rs, redirList: slices.Clone(cfg.Redirectors),
		schemeless: !cfg.StrictText}, nil
}

// Same reports whether x and y find the same URLs in every message: their
// configurations are equal once the limits' defaults are filled in. Stages
// that extract the same message use it to share one extraction.
func (x *Extractor) Same(y *Extractor) bool {
	if x == y {
		return true
	}
	return x != nil && y != nil && x.lim == y.lim && x.schemeless == y.schemeless &&
		slices.Equal(x.redirList, y.redirList)
}

// Extract reads a message (RFC 5322 with MIME) from r and returns the web
// URLs in it. It never fails: malformed input, unknown charsets and limits
// produce notes, and the result holds what was found until then. It may stop
// before the end of r; the caller owns r.
func (x *Extractor) Extract(r io.Reader) *Result {
	w := newWalker(x)
	w.message(r)
	res := new(Result)
	*res = *w.finish()
	// The URLs are copied out of the walker's recycled array, at their
	// final size.
	res.URLs = nil
	if len(w.res.URLs) > 0 {
		res.URLs = slices.Clone(w.res.URLs)
	}
	w.release()
	return res
}

// URL is one distinct web URL found in a message.
type URL struct {
	// Original is the URL as found, after transfer, charset and HTML entity
	// decoding (cut at Limits.MaxURLLength). For a URL unwrapped from a
	// redirector it is the decoded target.
	Original string
	// Normalized is scheme://host/path?query with the scheme and host
	// normalised, userinfo, port and fragment removed, and unsafe bytes
	// percent-encoded. URLs are de-duplicated on it.
	Normalized string
	// Scheme is "http", "https" or "ftp".
	Scheme string
	// Host is the host in lookup form: lower-case ASCII (IDNs as Punycode
	// A-labels, RFC 5891) without a trailing dot; for an IP address, its
	// canonical text (IPv6 without brackets).
	Host string
	// Domain is the registrable domain of Host (eTLD+1 by the Public Suffix
	// List, private section included), equal to Host when Host is itself
	// registrable; empty for an IP address.
	Domain string
	// IP is the address when the host is an IP literal, including the
	// numeric IPv4 forms browsers accept; zero otherwise.
	IP netip.Addr
	// Obfuscated reports a host written to mislead: with userinfo
	// ("bank.example@evil.example"), percent-encoded, as a numeric IPv4 form
	// other than the dotted quad, or as an IPv4-mapped IPv6 literal.
	Obfuscated bool
	// Via is the Normalized form of the redirector URL this one was
	// unwrapped from; empty when it was found in the message itself.
	Via string
	// Part is the MIME part it was found in, numbered as IMAP does
	// (RFC 3501 §6.4.5): "1" for a single-part message, "2.1" for the first
	// part of the second part.
	Part string
	// Source says where in the part: "text" (plain text), "html" (visible
	// HTML text), "css", an attribute name ("href", "src", "action", ...),
	// or "redirect" for an unwrapped target.
	Source string
}

// KeyKind is what a lookup key names.
type KeyKind uint8

const (
	// KeyDomain is a registrable domain: "example.co.jp".
	KeyDomain KeyKind = iota + 1
	// KeyHost is a full host name that differs from its registrable domain:
	// "login.example.co.jp".
	KeyHost
	// KeyIP is an IP address, to be looked up in reversed form.
	KeyIP
)

func (k KeyKind) String() string {
	switch k {
	case KeyDomain:
		return "domain"
	case KeyHost:
		return "host"
	case KeyIP:
		return "ip"
	}
	return "unknown"
}

// Key is one distinct thing to look up in a URI reputation list.
type Key struct {
	Kind KeyKind
	Name string     // the domain, the host, or the address in canonical text
	IP   netip.Addr // set when Kind is KeyIP
}

// Result is what Extract found in one message.
type Result struct {
	// URLs are the distinct URLs in order of first appearance, at most
	// Limits.MaxURLs, at most Limits.MaxURLsPerHost per host. A redirector's target follows its wrapper.
	URLs []URL
	// Notes say, one short line each, what could not be read or was left
	// out: "part 2: unknown charset \"x-foo\", read as-is", "truncated after
	// 50 URLs". At most 20, the last of which may count the rest.
	Notes []string
	// Truncated is set when a limit stopped the extraction or skipped
	// content, so URLs may be missing.
	Truncated bool
	// Parts is the number of MIME entities visited; Bytes the number of
	// decoded bytes examined.
	Parts int
	Bytes int64
}

// Keys returns the distinct lookup keys of r.URLs: every registrable
// domain, every host that differs from its domain, and every IP address.
// The order is deterministic: domains, then hosts, then addresses, each
// sorted.
func (r *Result) Keys() []Key {
	keys := make([]Key, 0, len(r.URLs)*2)
	seen := make(map[Key]struct{}, len(r.URLs)*2)
	add := func(k Key) {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			keys = append(keys, k)
		}
	}
	for _, u := range r.URLs {
		if u.IP.IsValid() {
			add(Key{Kind: KeyIP, Name: u.Host, IP: u.IP})
			continue
		}
		add(Key{Kind: KeyDomain, Name: u.Domain})
		if u.Host != u.Domain {
			add(Key{Kind: KeyHost, Name: u.Host})
		}
	}
	slices.SortFunc(keys, func(a, b Key) int {
		if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if a.Kind == KeyIP {
			return a.IP.Compare(b.IP)
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return keys
}
