package links

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"mvdan.cc/xurls/v2"
)

// webURL is xurls' strict matcher restricted to the schemes with a web
// reputation. Go's regexp runs it at roughly 100 ns a byte, so it is only
// run where a URL starts, and only when the ASCII fast path cannot decide.
var webURL = sync.OnceValue(func() *regexp.Regexp {
	re, err := xurls.StrictMatchingScheme(`https?://|ftp://`)
	if err != nil {
		panic(err)
	}
	return re
})

// tlds is xurls' list of top-level domains (ASCII ones, and its pseudo-TLDs
// such as "example"), for recognising scheme-less hosts.
var tlds = sync.OnceValue(func() map[string]struct{} {
	m := make(map[string]struct{}, len(xurls.TLDs)+len(xurls.PseudoTLDs))
	for _, list := range [][]string{xurls.TLDs, xurls.PseudoTLDs} {
		for _, t := range list {
			if t != "" && t[0] < utf8.RuneSelf {
				m[strings.ToLower(t)] = struct{}{}
			}
		}
	}
	return m
})

// The ASCII characters of xurls' path rule: midI may appear anywhere in a
// URL after the scheme, endI may end it. Everything else ASCII ends a URL,
// except the opening brackets, which xurls balances.
var midI, endI = func() (mid, end [128]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'*+,;=:@/?#\\") {
		mid[c] = true
	}
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~%$&+=/#") {
		end[c] = true
	}
	return
}()

// Text is scanned as a stream of whitespace-separated tokens, because a URL
// in text never contains whitespace. A token longer than maxToken (no
// whitespace for 16 KiB) is scanned in pieces that overlap by tokenOverlap,
// enough to hold a URL's scheme, userinfo and host.
const (
	maxToken     = 16 << 10
	tokenOverlap = 4 << 10
)

// feedText scans the complete tokens in p; a token that may continue in the
// next feed is kept.
func (w *walker) feedText(p []byte) {
	if len(w.pend) > 0 {
		i, size := indexSpace(p)
		if i < 0 {
			w.pend = append(w.pend, p...)
			w.capPending()
			return
		}
		w.pend = append(w.pend, p[:i]...)
		w.scanToken(w.pend, len(w.pend))
		w.pend = w.pend[:0]
		p = p[i+size:]
	}
	j, size := lastIndexSpace(p)
	if j < 0 {
		w.pend = append(w.pend, p...)
		w.capPending()
		return
	}
	w.scanTokens(p[:j])
	w.pend = append(w.pend, p[j+size:]...)
	w.capPending()
}

// flushText scans the kept token: the text has ended, or a block boundary
// in HTML ends the token.
func (w *walker) flushText() {
	if len(w.pend) > 0 {
		w.scanToken(w.pend, len(w.pend))
		w.pend = w.pend[:0]
	}
}

// capPending bounds the kept token: its head is scanned now, ignoring URLs
// that start in the last tokenOverlap bytes, which are kept and scanned with
// what follows.
func (w *walker) capPending() {
	if len(w.pend) <= maxToken {
		return
	}
	keep := len(w.pend) - tokenOverlap
	for keep > 0 && !utf8.RuneStart(w.pend[keep]) {
		keep--
	}
	w.scanToken(w.pend, keep)
	w.pend = append(w.pend[:0], w.pend[keep:]...)
}

// scanTokens scans the whitespace-separated tokens in b that can hold a
// URL. Most text is words that cannot, and cutting every word out of it cost
// more than everything else the extraction does, so the text is passed over
// with IndexByte to the next byte a URL needs (see urlTokens), and only the
// token around that byte is cut out and scanned.
func (w *walker) scanTokens(b []byte) {
	ts := urlTokens{b: b, schemeless: w.schemeless, slash: -1, dot: -1, sep: -1}
	for !w.done {
		tok, ok := ts.next()
		if !ok {
			return
		}
		w.scanToken(tok, len(tok))
	}
}

// urlTokens yields, in order, the whitespace-separated tokens of b (as
// indexSpace separates them) for which scanToken can find something: those
// holding "://" and, when scheme-less hosts are taken, those holding a '.'
// ("www." or a host followed by a path needs both a '.' and, for the path, a
// '/'). Every other token is skipped without being cut out. The positions
// of the next '/', '.' and "://" are remembered, so each is searched for
// once per text, whatever the number of tokens.
type urlTokens struct {
	b          []byte
	i          int // where the next token starts (b[:i] is done)
	schemeless bool
	slash, dot int // next '/' or '.' at or after i, -1 before the first search
	sep        int // next "://" at or after i, -1 before the first search
}

func (t *urlTokens) next() ([]byte, bool) {
	b := t.b
	for t.i < len(b) {
		var p int
		if t.schemeless {
			// A token with "://" has a '/', one with "www." a '.'; one
			// with neither cannot hold a URL.
			if t.slash < t.i && t.slash != len(b) {
				t.slash = indexFrom(b, t.i, "/")
			}
			if t.dot < t.i && t.dot != len(b) {
				t.dot = indexFrom(b, t.i, ".")
			}
			p = min(t.slash, t.dot)
		} else {
			if t.sep < t.i && t.sep != len(b) {
				t.sep = indexFrom(b, t.i, "://")
			}
			p = t.sep
		}
		if p == len(b) {
			t.i = len(b)
			return nil, false
		}
		// The token around p: p is an ASCII byte, so it is never inside
		// a multi-byte space, and t.i is where a token starts.
		start := t.i
		if k, size := lastIndexSpace(b[t.i:p]); k >= 0 {
			start = t.i + k + size
		}
		end, next := len(b), len(b)
		if k, size := indexSpace(b[p:]); k >= 0 {
			end, next = p+k, p+k+size
		}
		t.i = next
		tok := b[start:end]
		if t.schemeless && !mayHoldURL(tok) {
			continue
		}
		return tok, true
	}
	return nil, false
}

// indexFrom returns the index of sep in b at or after i, or len(b).
func indexFrom(b []byte, i int, sep string) int {
	var k int
	if len(sep) == 1 {
		k = bytes.IndexByte(b[i:], sep[0])
	} else {
		k = bytes.Index(b[i:], []byte(sep))
	}
	if k < 0 {
		return len(b)
	}
	return i + k
}

// mayHoldURL is scanToken's test, in scheme-less mode, of whether a token
// can hold a URL.
func mayHoldURL(tok []byte) bool {
	return bytes.Contains(tok, []byte("://")) || containsFold(tok, "www.") ||
		(bytes.IndexByte(tok, '.') >= 0 && bytes.IndexByte(tok, '/') >= 0)
}

// scanToken finds the URLs in one token, reporting those that start before
// limit. Cheap byte checks decide first whether a token can hold a URL.
func (w *walker) scanToken(tok []byte, limit int) {
	if bytes.Contains(tok, []byte("://")) {
		findStrict(tok, limit, w.textFn)
		return
	}
	if !w.schemeless {
		return
	}
	if containsFold(tok, "www.") || (bytes.IndexByte(tok, '.') >= 0 && bytes.IndexByte(tok, '/') >= 0) {
		w.scratch = findSchemeless(tok, limit, w.scratch, w.slFn)
	}
}

// findStrict calls fn for each http, https or ftp URL in s that starts
// before limit, exactly as webURL().FindAll would find them: a URL starts at
// its scheme, wherever "://" follows one. Plain ASCII URLs are delimited by
// the xurls path rule directly; the regexp decides the rest (brackets, which
// it balances, and non-ASCII).
func findStrict(s []byte, limit int, fn func([]byte)) {
	from := 0
	for from < len(s) {
		k := bytes.Index(s[from:], []byte("://"))
		if k < 0 {
			return
		}
		k += from
		start := schemeStart(s, k)
		if start < 0 || start >= limit {
			from = k + 3
			if start >= limit {
				return
			}
			continue
		}
		end := strictEnd(s, start, k+3)
		if end < 0 {
			from = k + 3
			continue
		}
		fn(s[start:end])
		from = end
	}
}

// schemeStart returns where the http, https or ftp scheme that ends at k
// (the index of "://") starts, or -1.
func schemeStart(s []byte, k int) int {
	switch {
	case k >= 5 && strings.EqualFold(string(s[k-5:k]), "https"):
		return k - 5
	case k >= 4 && strings.EqualFold(string(s[k-4:k]), "http"):
		return k - 4
	case k >= 3 && strings.EqualFold(string(s[k-3:k]), "ftp"):
		return k - 3
	}
	return -1
}

// maxRegexpWindow bounds the text the regexp looks at for one URL.
const maxRegexpWindow = 4 << 10

// strictEnd returns the end of the URL that starts at start and whose
// authority starts at rest, or -1 if there is none.
func strictEnd(s []byte, start, rest int) int {
	end := -1
	for j := rest; j < len(s); j++ {
		c := s[j]
		if c >= utf8.RuneSelf || c == '(' || c == '[' || c == '{' {
			// The regexp runs to the end of the URL, and xurls takes any
			// letter as part of one: bound its window by where cutCJK will
			// end the URL anyway, and by maxRegexpWindow.
			w := s[start:min(len(s), start+maxRegexpWindow)]
			loc := webURL().FindIndex(w[:proseCut(w)])
			if loc == nil || loc[0] != 0 {
				return -1
			}
			return start + loc[1]
		}
		if !midI[c] {
			break
		}
		if endI[c] {
			end = j + 1
		}
	}
	return end
}

// findSchemeless finds hosts written without a scheme: a name ending in a
// known top-level domain, either starting with "www." or followed by a
// path. The candidate is then delimited as "http://" + candidate, so the
// path follows the same rule as in findStrict. buf is scratch space, which
// is returned for reuse.
func findSchemeless(tok []byte, limit int, buf []byte, fn func([]byte)) []byte {
	// The token's own start (after opening punctuation) may hold
	// "host/path"; "www." may also start after any punctuation.
	first := 0
	for first < len(tok) && strings.IndexByte(`([{<"'`, tok[first]) >= 0 {
		first++
	}
	for p := first; p < len(tok) && p < limit; p++ {
		www := hasPrefixFold(tok[p:], "www.")
		if p != first && !www {
			continue
		}
		if p > 0 && p != first && hostByte(tok[p-1]) || p > 0 && tok[p-1] == '@' {
			continue
		}
		hend := p
		for hend < len(tok) && hostByte(tok[hend]) {
			hend++
		}
		host := tok[p:hend]
		for len(host) > 0 && (host[len(host)-1] == '.' || host[len(host)-1] == '-') {
			host = host[:len(host)-1]
		}
		if !knownTLD(host) {
			continue
		}
		after := p + len(host)
		// An optional port, then a path.
		q := after
		if q < len(tok) && tok[q] == ':' {
			q++
			for q < len(tok) && tok[q] >= '0' && tok[q] <= '9' {
				q++
			}
		}
		hasPath := q < len(tok) && tok[q] == '/' && len(host) == hend-p
		if !www && !hasPath {
			continue
		}
		buf = append(buf[:0], "http://"...)
		if hasPath {
			buf = append(buf, tok[p:]...)
			end := strictEnd(buf, 0, len("http://"))
			if end < 0 {
				continue
			}
			fn(buf[:end])
			p += end - len("http://") - 1
		} else {
			buf = append(buf, host...)
			fn(buf)
			p = after - 1
		}
	}
	return buf
}

func hostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-'
}

func hasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && strings.EqualFold(string(b[:len(s)]), s)
}

// knownTLD reports whether host has at least two labels and ends in a
// top-level domain xurls knows (or a Punycode one).
func knownTLD(host []byte) bool {
	i := bytes.LastIndexByte(host, '.')
	if i <= 0 || i == len(host)-1 || bytes.Contains(host, []byte("..")) {
		return false
	}
	tld := strings.ToLower(string(host[i+1:]))
	if strings.HasPrefix(tld, "xn--") {
		return true
	}
	_, ok := tlds()[tld]
	return ok
}

// textURL normalises one URL found in text and adds it.
func (w *walker) textURL(m []byte) {
	w.textURLFrom(m, 0)
}

// schemelessURL is textURL for a scheme-less match, which arrives as
// "http://" + what was written.
func (w *walker) schemelessURL(m []byte) {
	w.textURLFrom(m, len("http://"))
}

func (w *walker) textURLFrom(m []byte, orig int) {
	if w.raw.hasBytes(m) {
		return
	}
	// One string serves as the key of w.raw, the input of parseURL and
	// URL.Original: cutCJK only ever shortens m.
	s := string(m)
	w.handledString(s)
	m = cutCJK(m)
	if len(m) <= orig {
		return
	}
	s = s[:len(m)]
	p, err := parseURL(s, w.lim.MaxURLLength)
	if err != nil {
		w.dropped(m[orig:], err)
		return
	}
	p.Original = cutString(s[orig:], w.lim.MaxURLLength)
	w.add(&p, w.source, "", 0)
}

// cutCJK ends a URL found in text where Japanese (or Chinese, Korean) text
// resumes without a space, as it does in Japanese mail:
// "詳細はhttp://example.jp/をご覧ください。" xurls accepts any letter in a URL
// (RFC 3987 IRIs), so it would take the sentence in. A CJK character right
// after an ASCII one ends the URL, except where a host label starts (right
// after "://" or a "." in the host), so that internationalised hosts such as
// http://日本語.jp/ stay whole; CJK and full-width punctuation always ends
// it. Full-width letters and digits do not: hosts typed in full width are
// mapped to ASCII by IDNA, as browsers do. The price is that a path written
// in raw CJK characters is cut after its last ASCII character, which keeps
// the host, the part that is looked up. Quotation marks (“ ” « » ‘ ’,
// Unicode classes Pi and Pf), which word processors put around URLs, end it
// too.
func cutCJK(m []byte) []byte {
	i := proseCut(m)
	if i == len(m) {
		return m
	}
	// Delimit what is left by the same xurls rule (trailing punctuation,
	// balanced brackets).
	k := bytes.Index(m, []byte("://"))
	end := strictEnd(m[:i], 0, k+3)
	if end < 0 {
		return nil
	}
	return m[:end]
}

// proseCut returns where cutCJK ends the URL m, or len(m).
func proseCut(m []byte) int {
	ascii := true
	for _, c := range m {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return len(m)
	}
	k := bytes.Index(m, []byte("://"))
	if k < 0 {
		return len(m)
	}
	hostEnd := len(m)
	if i := bytes.IndexAny(m[k+3:], "/?#"); i >= 0 {
		hostEnd = k + 3 + i
	}
	prev := byte('/') // a host label starts here
	for i := k + 3; i < len(m); {
		r, size := utf8.DecodeRune(m[i:])
		if cjkPunct(r) || unicode.In(r, unicode.Pi, unicode.Pf) {
			return i
		}
		if r >= 0x2E80 && !fullWidthAlnum(r) && prev < utf8.RuneSelf {
			labelStart := i < hostEnd && (i == k+3 || prev == '.')
			if !labelStart {
				return i
			}
		}
		if size == 1 {
			prev = m[i]
		} else {
			prev = utf8.RuneSelf
		}
		i += size
	}
	return len(m)
}

// fullWidthAlnum reports the full-width forms of ASCII letters and digits
// (U+FF10–FF19, U+FF21–FF3A, U+FF41–FF5A), and the full-width full stop.
func fullWidthAlnum(r rune) bool {
	return r >= 0xFF10 && r <= 0xFF19 || r >= 0xFF21 && r <= 0xFF3A || r >= 0xFF41 && r <= 0xFF5A || r == 0xFF0E
}

// cjkPunct: CJK Symbols and Punctuation (U+3000–303F: 、。「」…) and the
// full-width and half-width punctuation forms (！（），：？［］｛｝｡｢｣､ …).
// Full-width letters and digits are not included: hosts typed in full width
// are mapped to ASCII by IDNA, as browsers do.
func cjkPunct(r rune) bool {
	switch {
	case r >= 0x3000 && r <= 0x303F:
		return true
	case r >= 0xFF01 && r <= 0xFF0F && r != 0xFF0E: // U+FF0E is a full stop, mapped to "."
		return true
	case r >= 0xFF1A && r <= 0xFF20, r >= 0xFF3B && r <= 0xFF40, r >= 0xFF5B && r <= 0xFF65 && r != 0xFF61:
		return true
	}
	return false
}

// indexSpace returns the index and size of the first white space in b:
// ASCII white space or a Unicode space (NBSP from &nbsp;, the ideographic
// space U+3000 of Japanese text, ...), or -1.
func indexSpace(b []byte) (int, int) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < utf8.RuneSelf {
			if asciiSpace[c] {
				return i, 1
			}
			continue
		}
		if n := uniSpace(b[i:]); n > 0 {
			return i, n
		}
	}
	return -1, 0
}

// lastIndexSpace is indexSpace from the end.
func lastIndexSpace(b []byte) (int, int) {
	for i := len(b) - 1; i >= 0; i-- {
		c := b[i]
		if c < utf8.RuneSelf {
			if asciiSpace[c] {
				return i, 1
			}
			continue
		}
		if utf8.RuneStart(c) {
			if n := uniSpace(b[i:]); n > 0 {
				return i, n
			}
		}
	}
	return -1, 0
}

var asciiSpace = [utf8.RuneSelf]bool{' ': true, '\t': true, '\n': true, '\r': true, '\f': true, '\v': true}

// uniSpace returns the size of the Unicode space character at the start of
// b, or 0.
func uniSpace(b []byte) int {
	r, n := utf8.DecodeRune(b)
	switch r {
	case 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return n
	}
	if r >= 0x2000 && r <= 0x200A {
		return n
	}
	return 0
}

// readBufs are plain's read buffers: one per text part otherwise, which was
// a third of the bytes WRS allocated per message.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// plain scans a text/plain body.
func (w *walker) plain(r io.Reader) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	for {
		n, err := r.Read(buf)
		if n > 0 {
			w.feedText(buf[:n])
		}
		if err != nil || w.done {
			w.flushText()
			if err == nil {
				err = errStopped
			}
			return err
		}
	}
}

// dropped notes a URL whose host cannot be looked up. Relative references
// and other schemes are not worth a note.
func (w *walker) dropped(raw []byte, err error) {
	if errors.Is(err, ErrRelative) || errors.Is(err, ErrScheme) {
		return
	}
	w.note("part %s: %q dropped: %v", w.label, cutString(string(raw), 80), err)
}

// maxRaw bounds the cache of link texts already handled.
const maxRaw = 4096

// handled reports whether the same link text was handled before, and
// remembers it. Mail repeats links (logo, headline and button all point to
// the same URL), and the same text always gives the same outcome, so the
// work and any note are not repeated.
func (w *walker) handled(raw []byte) bool {
	if w.raw.hasBytes(raw) {
		return true
	}
	if w.raw.len() < maxRaw && len(raw) <= w.lim.MaxURLLength {
		w.raw.add(string(raw))
	}
	return false
}

// handledString is handled for a link text not handled before, which is
// already a string.
func (w *walker) handledString(raw string) {
	if w.raw.len() < maxRaw && len(raw) <= w.lim.MaxURLLength {
		w.raw.add(raw)
	}
}

// add keeps a normalised URL unless it is a duplicate, its host already
// has MaxURLsPerHost URLs, or MaxURLs are kept (which stops the
// extraction), and then adds a redirector's target after it.
func (w *walker) add(p *parsed, source, via string, hop int) {
	dup, onHost := w.kept(p)
	if dup {
		return
	}
	if onHost >= w.lim.MaxURLsPerHost {
		w.skippedDup++
		return
	}
	if len(w.res.URLs) >= w.lim.MaxURLs {
		w.stop("truncated after %d URLs", w.lim.MaxURLs)
		return
	}
	if w.indexed {
		w.seen[p.Normalized] = struct{}{}
		w.perHost[p.Host]++
	}
	u := p.URL
	u.Part, u.Source, u.Via = w.label, source, via
	w.res.URLs = append(w.res.URLs, u)

	if hop >= maxUnwrap {
		return
	}
	t, ok := w.x.redir.target(p)
	if !ok {
		return
	}
	tp, err := parseURL(t, w.lim.MaxURLLength)
	if err != nil {
		w.dropped([]byte(t), err)
		return
	}
	w.add(&tp, "redirect", p.Normalized, hop+1)
}

// smallSet is how many entries a slice holds before a map takes over: a
// message has a handful of links, and searching a few strings costs less
// than hashing them into a map.
const smallSet = 16

// kept reports whether a URL with p's normalised form is kept already, and
// how many kept URLs have p's host. Both follow from w.res.URLs, which is
// searched while it is short and indexed by w.seen and w.perHost after.
func (w *walker) kept(p *parsed) (dup bool, onHost int) {
	urls := w.res.URLs
	if len(urls) <= smallSet {
		for i := range urls {
			if urls[i].Normalized == p.Normalized {
				return true, 0
			}
			if urls[i].Host == p.Host {
				onHost++
			}
		}
		return false, onHost
	}
	if !w.indexed {
		for i := range urls {
			w.seen[urls[i].Normalized] = struct{}{}
			w.perHost[urls[i].Host]++
		}
		w.indexed = true
	}
	if _, ok := w.seen[p.Normalized]; ok {
		return true, 0
	}
	return false, w.perHost[p.Host]
}

// strSet is a set of strings, a slice while small, a map after.
type strSet struct {
	small []string
	m     map[string]struct{}
}

func (s *strSet) hasBytes(b []byte) bool {
	if s.m != nil {
		_, ok := s.m[string(b)]
		return ok
	}
	for _, k := range s.small {
		if k == string(b) {
			return true
		}
	}
	return false
}

func (s *strSet) len() int {
	if s.m != nil {
		return len(s.m)
	}
	return len(s.small)
}

// add adds k, which is not in s.
func (s *strSet) add(k string) {
	if s.m == nil {
		if len(s.small) < smallSet {
			s.small = append(s.small, k)
			return
		}
		s.m = make(map[string]struct{}, 4*smallSet)
		for _, x := range s.small {
			s.m[x] = struct{}{}
		}
	}
	s.m[k] = struct{}{}
}

// reset empties s for the next message, dropping a map grown beyond max
// entries.
func (s *strSet) reset(max int) {
	clear(s.small)
	s.small = s.small[:0]
	if len(s.m) > max {
		s.m = nil
	}
	clear(s.m)
}
