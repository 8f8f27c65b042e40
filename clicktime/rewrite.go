package clicktime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// Defaults and bounds of the rewriter.
const (
	// DefaultMaxLinks is RewriterConfig.MaxLinks when it is zero.
	DefaultMaxLinks = 200
	// MaxMessageBytes is the largest message Rewrite reads.
	MaxMessageBytes = 64 << 20
	// maxParts and maxDepth bound the MIME walk: more entities, or deeper
	// nesting, is ErrTooComplex. Real mail stays far below both; the
	// bounds are for messages made to exhaust a filter.
	maxParts = 1000
	maxDepth = 20
	// maxLine is RFC 5322 §2.1.1's limit, which a rewritten link must not
	// push a 7bit or 8bit line over.
	maxLine = 998
)

// Errors of Rewrite. The caller delivers such a message unchanged.
var (
	// ErrMalformed: the MIME structure cannot be followed (a bad
	// Content-Type, a multipart without its boundary).
	ErrMalformedMessage = errors.New("malformed message")
	// ErrTooComplex: more than 1000 MIME entities or deeper than 20 levels.
	ErrTooComplex = errors.New("message too complex")
	// ErrTooLarge: more than MaxMessageBytes.
	ErrTooLarge = errors.New("message too large to rewrite")
)

// errSkip unwinds the walk when a signed or encrypted entity is found.
var errSkip = errors.New("skip")

// RewriterConfig configures a Rewriter.
type RewriterConfig struct {
	// BaseURL is where the click service is reached from outside, e.g.
	// "https://click.example.org" (a path is allowed, no query or
	// fragment). Links become BaseURL + "/c/" + token.
	BaseURL string
	// Signer makes the tokens.
	Signer *Signer
	// ExcludeDomains are domains or hosts whose links are left alone,
	// subdomains included ("example.org" also covers www.example.org).
	ExcludeDomains []string
	// MaxLinks is the most links rewritten in one message (default 200);
	// further links are left as they are and Result.Capped is set.
	MaxLinks int
	// RewriteSigned rewrites signed messages too, breaking their
	// signatures. Encrypted content is never rewritten: it cannot be read.
	RewriteSigned bool
}

// Rewriter points the links of messages at the click service. It is
// immutable and safe for concurrent use.
type Rewriter struct {
	prefix   string // BaseURL + "/c/"
	prefixLC string
	signer   *Signer
	exclude  []string
	maxLinks int
	signed   bool
}

// NewRewriter returns a Rewriter, or an error when BaseURL is not an
// absolute http(s) URL without query and fragment, Signer is nil, or an
// excluded domain is not a domain name.
func NewRewriter(cfg RewriterConfig) (*Rewriter, error) {
	base, err := ValidateBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.Signer == nil {
		return nil, errors.New("clicktime: no signer")
	}
	if cfg.MaxLinks < 0 {
		return nil, errors.New("clicktime: negative max_links")
	}
	r := &Rewriter{prefix: base + "/c/", signer: cfg.Signer, maxLinks: cfg.MaxLinks, signed: cfg.RewriteSigned}
	r.prefixLC = strings.ToLower(r.prefix)
	if r.maxLinks == 0 {
		r.maxLinks = DefaultMaxLinks
	}
	for _, d := range cfg.ExcludeDomains {
		h, ok := normHost(d)
		if !ok || !strings.Contains(h, ".") && h != "localhost" {
			return nil, fmt.Errorf("clicktime: excluded domain %q is not a domain name", d)
		}
		r.exclude = append(r.exclude, h)
	}
	return r, nil
}

// ValidateBaseURL checks a click service base URL and returns it without a
// trailing slash. It must be absolute http(s) with a host, without
// userinfo, query or fragment, and hold only characters that need no
// quoting in an HTML attribute or in text.
func ValidateBaseURL(s string) (string, error) {
	s = strings.TrimRight(s, "/")
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#") {
		return "", fmt.Errorf("clicktime: base URL %q must be an absolute http(s) URL without query or fragment, e.g. https://click.example.org", s)
	}
	for i := 0; i < len(s); i++ {
		if !isURLChar(s[i]) || strings.IndexByte(`"'&<>()[]`, s[i]) >= 0 {
			return "", fmt.Errorf("clicktime: base URL %q holds %q", s, s[i])
		}
	}
	return s, nil
}

// Result says what Rewrite did.
type Result struct {
	// Rewritten is the number of links now pointing at the click service.
	Rewritten int
	// Skipped is "signed" or "encrypted" when the message (or a part of
	// it) is, and nothing was rewritten for that reason; else "".
	Skipped string
	// Capped is set when MaxLinks links were rewritten and more were
	// left as they are.
	Capped bool
	// Unchanged counts links that could not be rewritten: longer than
	// MaxURLLen, or on a 7bit/8bit line that the token would push past
	// 998 bytes, or not representable as a URL to redirect to.
	Unchanged int
}

// Note is the result in the form of the trace header's items:
// "links=rewritten:12", "links=rewritten:200,capped",
// "links=rewritten:3,unchanged:1", "links=not-rewritten:signed".
func (r Result) Note() string {
	if r.Skipped != "" {
		return "links=not-rewritten:" + r.Skipped
	}
	s := "links=rewritten:" + strconv.Itoa(r.Rewritten)
	if r.Capped {
		s += ",capped"
	}
	if r.Unchanged > 0 {
		s += ",unchanged:" + strconv.Itoa(r.Unchanged)
	}
	return s
}

// Rewrite reads a whole RFC 5322 message from src and writes it to dst
// with its web links pointing at the click service; msgRef goes into each
// token (for the click log). Only the bodies of the text/plain and
// text/html parts that hold links change: each is re-encoded with its own
// transfer encoding; every other byte (headers, boundaries, preamble,
// epilogue, other parts) is copied as it was.
//
// On an error nothing has been written to dst, and the message should be
// delivered as it is. A message that is signed or encrypted (see
// RewriterConfig.RewriteSigned) is copied unchanged with Result.Skipped
// set; that is not an error.
func (r *Rewriter) Rewrite(msgRef string, src io.Reader, dst io.Writer) (Result, error) {
	data, err := io.ReadAll(io.LimitReader(src, MaxMessageBytes+1))
	if err != nil {
		return Result{}, err
	}
	if len(data) > MaxMessageBytes {
		return Result{}, ErrTooLarge
	}
	w := &walk{r: r, ref: msgRef, data: data}
	err = w.entity(0, len(data), 0, "text/plain")
	if errors.Is(err, errSkip) {
		w.res = Result{Skipped: w.skip}
		w.edits = nil
	} else if err != nil {
		return Result{}, err
	}
	bw := bufio.NewWriterSize(dst, 32<<10)
	pos := 0
	for _, e := range w.edits {
		bw.Write(data[pos:e.start])
		bw.Write(e.repl)
		pos = e.end
	}
	bw.Write(data[pos:])
	return w.res, bw.Flush()
}

// edit replaces data[start:end].
type edit struct {
	start, end int
	repl       []byte
}

// walk is the state of one Rewrite. Edits are kept in the order of the
// data, and never overlap: the walk visits the message front to back.
type walk struct {
	r     *Rewriter
	ref   string
	data  []byte
	edits []edit
	res   Result
	parts int
	skip  string
}

// entity handles the MIME entity data[start:end] (a header, a blank line,
// a body). defType is the Content-Type it has without a header field:
// text/plain, or message/rfc822 in multipart/digest (RFC 2046 §5.1.5).
func (w *walk) entity(start, end, depth int, defType string) error {
	w.parts++
	if w.parts > maxParts || depth > maxDepth {
		return ErrTooComplex
	}
	h, bodyStart := w.header(start, end)
	mt, params := defType, map[string]string(nil)
	if v, ok := h["content-type"]; ok && strings.TrimSpace(v) != "" {
		var err error
		mt, params, err = mime.ParseMediaType(v)
		if mt == "" || err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return fmt.Errorf("%w: Content-Type %q", ErrMalformedMessage, cut(v, 100))
		}
		mt = strings.ToLower(mt)
	}
	cte := strings.ToLower(strings.TrimSpace(h["content-transfer-encoding"]))
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"

	switch {
	case mt == "multipart/signed":
		if !w.r.signed {
			w.skip = "signed"
			return errSkip
		}
	case mt == "multipart/encrypted":
		if !w.r.signed {
			w.skip = "encrypted"
			return errSkip
		}
		return nil // opaque
	case mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime":
		if !w.r.signed {
			w.skip = "encrypted"
			if t := strings.ToLower(params["smime-type"]); t == "signed-data" || t == "certs-only" {
				w.skip = "signed"
			}
			return errSkip
		}
		return nil // opaque
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if !identity {
			return nil // RFC 2045 §6.4 forbids it; leave it alone
		}
		b := params["boundary"]
		if b == "" {
			return fmt.Errorf("%w: %s without boundary", ErrMalformedMessage, mt)
		}
		def := "text/plain"
		if mt == "multipart/digest" {
			def = "message/rfc822"
		}
		return w.multipart(bodyStart, end, b, depth, def)
	case mt == "message/rfc822" || mt == "message/global":
		if !identity {
			return nil
		}
		return w.entity(bodyStart, end, depth+1, "text/plain")
	case mt == "text/plain" || mt == "text/html":
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(h["content-disposition"])), "attachment") {
			return nil // a file: its bytes are the user's, not a link list
		}
		return w.leaf(bodyStart, end, cte, params["charset"], mt == "text/html")
	}
	return nil
}

// header parses the header of the entity at data[start:end] for the
// fields the walk needs and returns them (names lower-case, values
// unfolded) with the offset of the body. Without a blank line the whole
// entity is header.
func (w *walk) header(start, end int) (map[string]string, int) {
	h := make(map[string]string, 3)
	d := w.data
	var name string
	var val []byte
	flush := func() {
		if name != "" {
			if _, dup := h[name]; !dup { // the first one counts, as in go-message
				h[name] = string(val)
			}
		}
		name, val = "", nil
	}
	i := start
	for i < end {
		j := bytes.IndexByte(d[i:end], '\n')
		next := end
		if j >= 0 {
			next = i + j + 1
		}
		line := bytes.TrimRight(d[i:next], "\r\n")
		if len(line) == 0 && j >= 0 {
			flush()
			return h, next
		}
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if name != "" {
				val = append(val, line...)
			}
		default:
			flush()
			if k := bytes.IndexByte(line, ':'); k > 0 {
				n := strings.ToLower(string(bytes.TrimRight(line[:k], " \t")))
				switch n {
				case "content-type", "content-transfer-encoding", "content-disposition":
					name, val = n, append([]byte(nil), line[k+1:]...)
				}
			}
		}
		i = next
	}
	flush()
	return h, end
}

// multipart handles the body data[start:end] of a multipart with boundary
// b (RFC 2046 §5.1.1): a delimiter is "--" b at the start of a line, then
// optional "--" (the close delimiter), then only white space. The line
// break before a delimiter belongs to it, not to the part.
func (w *walk) multipart(start, end int, b string, depth int, def string) error {
	d := w.data
	delim := "--" + b
	partStart := -1
	found := false
	for i := start; i < end; {
		j := bytes.IndexByte(d[i:end], '\n')
		next := end
		if j >= 0 {
			next = i + j + 1
		}
		if bytes.HasPrefix(d[i:next], []byte(delim)) {
			rest := d[i+len(delim) : next]
			closing := bytes.HasPrefix(rest, []byte("--"))
			if closing {
				rest = rest[2:]
			}
			if len(bytes.Trim(rest, " \t\r\n")) == 0 {
				found = true
				if partStart >= 0 {
					pe := i
					if pe > partStart && d[pe-1] == '\n' {
						pe--
						if pe > partStart && d[pe-1] == '\r' {
							pe--
						}
					}
					if err := w.entity(partStart, pe, depth+1, def); err != nil {
						return err
					}
				}
				if closing {
					return nil // the rest is the epilogue
				}
				partStart = next
			}
		}
		i = next
	}
	if !found {
		return fmt.Errorf("%w: no delimiter for boundary %q", ErrMalformedMessage, cut(b, 70))
	}
	if partStart >= 0 && partStart < end {
		// No close delimiter: the last part runs to the end, as mail
		// clients read a truncated message.
		return w.entity(partStart, end, depth+1, def)
	}
	return nil
}

// leaf rewrites the links of one text/plain or text/html body.
func (w *walk) leaf(start, end int, cte, charset string, isHTML bool) error {
	raw := w.data[start:end]
	var text []byte
	switch cte {
	case "", "7bit", "8bit", "binary":
		text = raw
	case "quoted-printable":
		text = decodeQP(raw)
	case "base64":
		var ok bool
		if text, ok = decodeBase64(raw); !ok {
			return nil // not base64 after all: leave it as it is
		}
	default:
		return nil
	}
	if !w.r.signed {
		// Inline OpenPGP (RFC 4880 §7): rewriting would break it as
		// surely as it breaks PGP/MIME.
		if bytes.Contains(text, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
			w.skip = "signed"
			return errSkip
		}
		if bytes.Contains(text, []byte("-----BEGIN PGP MESSAGE-----")) {
			w.skip = "encrypted"
			return errSkip
		}
	}
	cs := normCharset(charset)
	segs := asciiSegments(text, cs)
	if len(segs) == 0 {
		return nil
	}
	var links []link
	if isHTML {
		links = findHTMLLinks(text, segs, cs)
	} else {
		links = findTextLinks(text, segs, cs)
	}
	if len(links) == 0 {
		return nil
	}
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
	var out []byte
	changed := false
	pos, lineLen := 0, 0 // lineLen: bytes of the output line so far (identity only)
	lineEnd := -1        // end of the input line holding the current link, cached
	for _, l := range links {
		u := w.eligible(l.target)
		repl := ""
		if u != "" && identity {
			lineLen = advanceLine(lineLen, text[pos:l.start])
			pos = l.start
			if l.end > lineEnd {
				lineEnd = len(text)
				if k := bytes.IndexByte(text[l.end:], '\n'); k >= 0 {
					lineEnd = l.end + k
				}
			}
			rest := lineEnd - l.end
			if rest > 0 && text[lineEnd-1] == '\r' {
				rest--
			}
			if lineLen+len(w.r.prefix)+tokenLen(u, w.ref, w.r.signer)+rest > maxLine {
				w.res.Unchanged++
				u = ""
			}
		}
		if u != "" {
			w.res.Rewritten++
			repl = w.r.prefix + w.r.signer.Token(u, w.ref)
		}
		switch {
		case repl == "" && identity:
			lineLen = advanceLine(lineLen, text[pos:l.end])
		case repl == "":
			out = append(out, text[pos:l.end]...)
		case identity:
			w.edits = append(w.edits, edit{start + l.start, start + l.end, []byte(repl)})
			lineLen += len(repl)
		default:
			if out == nil {
				out = make([]byte, 0, len(text)+len(links)*(len(repl)-(l.end-l.start)+16))
			}
			out = append(out, text[pos:l.start]...)
			out = append(out, repl...)
			changed = true
		}
		pos = l.end
	}
	if !changed {
		return nil
	}
	out = append(out, text[pos:]...)
	var enc []byte
	switch cte {
	case "quoted-printable":
		enc = encodeQP(out)
	case "base64":
		enc = encodeBase64(out, base64LineLen(raw), endsWithNewline(raw))
	}
	w.edits = append(w.edits, edit{start, end, enc})
	return nil
}

// advanceLine returns the length of the current line after appending p to
// a line of n bytes.
func advanceLine(n int, p []byte) int {
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		return len(p) - i - 1
	}
	return n + len(p)
}

// eligible returns the URL to put in a token for a link to target, or ""
// when the link stays as it is (already rewritten, excluded, over the
// cap, too long, not a URL to redirect to), counting the last two in
// w.res.
func (w *walk) eligible(target string) string {
	if len(target) >= len(w.r.prefix) && strings.ToLower(target[:len(w.r.prefix)]) == w.r.prefixLC {
		return ""
	}
	u, ok := cleanTarget(target)
	if !ok {
		w.res.Unchanged++
		return ""
	}
	if w.r.excluded(u) {
		return ""
	}
	if w.res.Rewritten >= w.r.maxLinks {
		w.res.Capped = true
		return ""
	}
	if len(u) > MaxURLLen {
		w.res.Unchanged++
		return ""
	}
	return u
}

// excluded reports whether the host of the absolute URL u is an excluded
// domain or below one.
func (r *Rewriter) excluded(u string) bool {
	if len(r.exclude) == 0 {
		return false
	}
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h, ok := normHost(p.Hostname())
	if !ok {
		return false
	}
	for _, d := range r.exclude {
		if h == d || strings.HasSuffix(h, "."+d) {
			return true
		}
	}
	return false
}

// normHost lower-cases a host, drops a trailing dot and converts an IDN to
// Punycode (RFC 5891), so that exclusions match however a link spells it.
func normHost(h string) (string, bool) {
	h = strings.TrimSuffix(strings.TrimSpace(h), ".")
	if h == "" {
		return "", false
	}
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		a = strings.ToLower(h)
	}
	return a, a != ""
}

// cleanTarget turns a link as found into the URL a browser would go to,
// for the token: ASCII tab and newlines removed and surrounding spaces
// trimmed (WHATWG URL §4.4), an internationalised host as Punycode, spaces
// and bytes outside ASCII in the rest percent-encoded. It fails for what
// is not an absolute http(s) URL with a host.
func cleanTarget(s string) (string, bool) {
	s = strings.Trim(s, " \t\r\n\f")
	if strings.ContainsAny(s, "\t\r\n") {
		s = strings.NewReplacer("\t", "", "\r", "", "\n", "").Replace(s)
	}
	i := strings.Index(s, "://")
	if i < 0 {
		return "", false
	}
	scheme := strings.ToLower(s[:i])
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	rest := s[i+3:]
	hostEnd := strings.IndexAny(rest, "/?#")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	authority, tail := rest[:hostEnd], rest[hostEnd:]
	if !isASCII(authority) {
		host, port := authority, ""
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			return "", false // userinfo in a non-ASCII authority: not worth guessing
		}
		if c := strings.LastIndexByte(host, ':'); c >= 0 {
			host, port = host[:c], host[c:]
		}
		a, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return "", false
		}
		authority = a + port
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i+3])
	b.WriteString(authority)
	for k := 0; k < len(tail); k++ {
		c := tail[k]
		if c == ' ' || c >= 0x80 || c < 0x20 || c == 0x7f {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	u := b.String()
	return u, validTarget(u)
}

const upperHex = "0123456789ABCDEF"

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
