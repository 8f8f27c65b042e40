package links

import (
	"bytes"
	"io"

	"golang.org/x/net/html"
)

// The x/net/html tokenizer costs more than everything else the extraction
// does with an HTML part: it copies each token, and its byte-at-a-time
// reader is slow. Mail HTML is mostly text, tags with quoted attributes,
// comments and a <style>, so html reads that subset itself, one pass over
// the bytes, producing exactly the tokens the tokenizer would (tag and
// attribute names, attribute values with their character references and
// newlines as TagAttr returns them, text as Text returns it). At the first
// construct it does not read exactly like the tokenizer (a script or other
// raw-text element but style and title, a NUL byte in a tag, a character
// reference that attribute and text unescaping read differently, a comment
// with "--!", input that ends inside a construct), it hands the rest of the
// part, from that construct on, to htmlTokens: the tokenizer's state between
// two constructs is empty, so it reads the rest as it would have. A
// differential fuzz test (FuzzHTMLScan) holds the two paths to the same
// results.

// htmlRead is how much html reads at a time, the tokenizer's initial
// buffer: reading much further ahead would count text that an extraction
// stopped by MaxURLs never looks at in Result.Bytes.
const htmlRead = 4096

// html scans an HTML body (see above and htmlTokens for what it looks at).
func (w *walker) html(r io.Reader, nest int) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := (*bp)[:0]
	// A construct that continues after what has been read is scanned
	// again only once it has at least doubled, so that a long one read in
	// small pieces costs linear time, as in the tokenizer. One that does
	// not fit in buf (a long style sheet, a tag that never ends) goes to
	// the tokenizer, so that html adds no memory to the tokenizer's own.
	pending := 0
	for {
		if w.done {
			w.flushText()
			return errStopped
		}
		n, err := r.Read(buf[len(buf) : len(buf)+htmlRead])
		buf = buf[:len(buf)+n]
		if err == nil && len(buf) < 2*pending && cap(buf)-len(buf) >= htmlRead {
			continue
		}
		k, bail := w.scanHTML(buf, nest)
		if bail || err != nil && k < len(buf) || len(buf)-k > cap(buf)-htmlRead {
			rest := r
			if err != nil {
				rest = errReader{err}
			}
			return w.htmlTokens(io.MultiReader(bytes.NewReader(buf[k:]), rest), nest)
		}
		buf = buf[:copy(buf, buf[k:])]
		pending = len(buf)
		if err != nil {
			w.flushText()
			return err
		}
	}
}

// errReader returns its error: what ended the input, after the bytes html
// hands to the tokenizer.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// scanHTML reads the constructs at the start of b and returns how many
// bytes it has read: the rest is a construct that may continue after b, or,
// with bail set, one that the tokenizer must read.
func (w *walker) scanHTML(b []byte, nest int) (int, bool) {
	i := 0
	for i < len(b) && !w.done {
		lt := bytes.IndexByte(b[i:], '<')
		if lt != 0 {
			end := i + lt
			if lt < 0 {
				end = textEnd(b, i)
			}
			w.htmlText("", unescapeText(b[i:end]), nest)
			if end < len(b) && b[end] != '<' {
				return end, false // a character reference may continue
			}
			i = end
			continue
		}
		if i+1 >= len(b) {
			return i, false
		}
		c := b[i+1]
		var n int
		var bail bool
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			n, bail = w.startTag(b[i:], nest)
		case c == '/':
			n, bail = w.endTag(b[i:], nest)
		case c == '!':
			n, bail = markupEnd(b[i:])
		case c == '?':
			n = closeAngle(b[i:], 2)
		default:
			// Not a tag: "<" is text, up to the next one.
			end := len(b)
			if k := bytes.IndexByte(b[i+1:], '<'); k >= 0 {
				end = i + 1 + k
			} else {
				end = max(textEnd(b, i+1), i+1)
			}
			w.htmlText("", unescapeText(b[i:end]), nest)
			i = end
			if end < len(b) && b[end] != '<' {
				return i, false
			}
			continue
		}
		if bail || n == 0 {
			return i, bail
		}
		i += n
	}
	return i, false
}

// textEnd returns how much of the text b[i:] (which has no '<') can be
// unescaped now: all of it, unless it ends in what may be the start of a
// character reference continued in the next read.
func textEnd(b []byte, i int) int {
	a := bytes.LastIndexByte(b[i:], '&')
	if a < 0 {
		return len(b)
	}
	for _, c := range b[i+a+1:] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '#') {
			return len(b)
		}
	}
	return i + a
}

// unescapeText decodes character references in text as the tokenizer's
// Text does. (Text also turns CR LF into LF, which makes no difference to
// scanning: both are white space, and text URLs end there.)
func unescapeText(b []byte) []byte {
	if bytes.IndexByte(b, '&') < 0 {
		return b
	}
	return []byte(html.UnescapeString(string(b)))
}

// closeAngle returns the length of a construct that ends at the first '>'
// at or after b[from], or 0 if b has none yet: bogus comments, <!DOCTYPE>,
// <?...> and "</" not followed by a letter.
func closeAngle(b []byte, from int) int {
	if k := bytes.IndexByte(b[from:], '>'); k >= 0 {
		return from + k + 1
	}
	return 0
}

// markupEnd returns the length of a "<!" construct: a comment (HTML
// §13.2.5.43), which ends at the first "-->", or a doctype or bogus
// comment, which ends at the first '>'. Comments the tokenizer ends
// differently ("<!-->", "--!>") go to it.
func markupEnd(b []byte) (int, bool) {
	if len(b) < 4 {
		return 0, false
	}
	if b[2] != '-' || b[3] != '-' {
		return closeAngle(b, 2), false
	}
	body := b[4:]
	if len(body) < 2 {
		return 0, false
	}
	if body[0] == '>' || body[0] == '-' && body[1] == '>' {
		return 0, true
	}
	k := bytes.Index(body, []byte("-->"))
	bang := bytes.Index(body, []byte("--!"))
	if bang >= 0 && (k < 0 || bang < k) {
		return 0, true
	}
	if k < 0 {
		return 0, false
	}
	return 4 + k + 3, false
}

// tagAttr is one attribute of a tag: offsets into the tag.
type tagAttr struct{ ks, ke, vs, ve int }

// maxTagAttrs bounds the attributes html reads itself; a tag with more goes
// to the tokenizer.
const maxTagAttrs = 32

// parsedTag is a tag read the way the tokenizer reads it.
type parsedTag struct {
	name        []byte // as written
	attrs       [maxTagAttrs]tagAttr
	n           int // attributes kept: non-empty names, first of each name
	len         int // bytes up to and including '>'
	selfClosing bool
}

func tagSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' }

// parseTag reads the tag at the start of b ("<a" or "</a" up to '>') by the
// tokenizer's rules: the name runs to white space, '/' or '>'; attribute
// names to white space, '/', '>' or '=' (a leading '=' belongs to the name);
// values are quoted or run to white space or '>'. It returns false if b
// ends first, and bail if the tag has a NUL byte or too many attributes.
func parseTag(b []byte, from int, t *parsedTag) (ok, bail bool) {
	p := from + 1 // the name's first letter has been looked at
	for {
		if p >= len(b) {
			return false, false
		}
		if c := b[p]; tagSpace(c) || c == '/' || c == '>' {
			break
		}
		p++
	}
	t.name = b[from:p]
	t.n = 0
	skip := func() bool {
		for p < len(b) && tagSpace(b[p]) {
			p++
		}
		return p < len(b)
	}
	if !skip() {
		return false, false
	}
	for {
		if p >= len(b) {
			return false, false
		}
		if b[p] == '>' {
			p++
			break
		}
		var a tagAttr
		a.ks = p
		for {
			if p >= len(b) {
				return false, false
			}
			c := b[p]
			p++
			if c == '=' && p-1 == a.ks {
				continue
			}
			if c == '=' || tagSpace(c) || c == '/' || c == '>' {
				p--
				break
			}
		}
		a.ke = p
		a.vs, a.ve = p, p
		if !skip() {
			return false, false
		}
		switch c := b[p]; {
		case c == '/':
			p++
		case c == '=':
			p++
			if !skip() {
				return false, false
			}
			switch q := b[p]; q {
			case '>':
			case '"', '\'':
				k := bytes.IndexByte(b[p+1:], q)
				if k < 0 {
					return false, false
				}
				a.vs, a.ve = p+1, p+1+k
				p += k + 2
			default:
				a.vs = p
				for {
					if p >= len(b) {
						return false, false
					}
					c := b[p]
					p++
					if tagSpace(c) {
						a.ve = p - 1
						break
					}
					if c == '>' {
						p--
						a.ve = p
						break
					}
				}
			}
		}
		if a.ke > a.ks && !t.seen(b, a) {
			if t.n == maxTagAttrs {
				return false, true
			}
			t.attrs[t.n] = a
			t.n++
		}
		if !skip() {
			return false, false
		}
	}
	t.len = p
	if bytes.IndexByte(b[:p], 0) >= 0 {
		return false, true // the tokenizer replaces NUL in names and values
	}
	gt := p - 1
	t.selfClosing = b[gt-1] == '/' && (t.n == 0 || gt-1 != t.attrs[t.n-1].ve-1)
	return true, false
}

// seen reports whether the tag already has an attribute named like a (the
// tokenizer keeps the first, comparing names case-insensitively).
func (t *parsedTag) seen(b []byte, a tagAttr) bool {
	for _, o := range t.attrs[:t.n] {
		if equalFoldASCII(b[o.ks:o.ke], b[a.ks:a.ke]) {
			return true
		}
	}
	return false
}

func equalFoldASCII(x, y []byte) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if lowerByte(x[i]) != lowerByte(y[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// lowerInto returns b lower-cased (ASCII, as the tokenizer does), in buf
// when b has upper-case letters.
func lowerInto(buf *[64]byte, b []byte) []byte {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			var out []byte
			if len(b) <= len(buf) {
				out = buf[:len(b)]
			} else {
				out = make([]byte, len(b))
			}
			copy(out, b[:i])
			for j := i; j < len(b); j++ {
				out[j] = lowerByte(b[j])
			}
			return out
		}
	}
	return b
}

// rawTokenTag returns the tokenizer's name for an element whose content it
// reads as raw text or RCDATA, or "".
func rawTokenTag(name []byte) string {
	for _, s := range [...]string{"iframe", "noembed", "noframes", "noscript", "plaintext", "script", "style", "textarea", "title", "xmp"} {
		if equalFoldASCII(name, []byte(s)) {
			return s
		}
	}
	return ""
}

// startTag reads a start tag and, for <style> and <title>, the content up
// to its end tag, and hands them to the walker as html's token loop does.
func (w *walker) startTag(b []byte, nest int) (int, bool) {
	t := &w.tags[nest]
	ok, bail := parseTag(b, 1, t)
	if !ok {
		return 0, bail
	}
	n := t.len
	var content []byte
	rawTag := ""
	if len(t.name) >= len("xmp") && len(t.name) <= len("plaintext") {
		rawTag = rawTokenTag(t.name)
	}
	if rawTag != "" {
		if rawTag != "style" && rawTag != "title" || t.selfClosing {
			return 0, true
		}
		end, found := rawEnd(b[n:], rawTag)
		if !found {
			return 0, false
		}
		content = b[n : n+end]
		if bytes.IndexByte(content, 0) >= 0 {
			return 0, true // NUL becomes U+FFFD in raw text
		}
		n += end
	}
	// Every value is decoded before any is handled, so that a value only
	// the tokenizer decodes right hands it the whole tag.
	vals := &w.attrVals[nest]
	for j, a := range t.attrs[:t.n] {
		v, ok := unescapeAttr(convertNewlines(b[a.vs:a.ve]))
		if !ok {
			return 0, true
		}
		vals[j] = v
	}
	var nameBuf, keyBuf [64]byte
	name := lowerInto(&nameBuf, t.name)
	if !inlineTag(name) {
		w.flushText()
	}
	for j, a := range t.attrs[:t.n] {
		if w.done {
			break
		}
		w.attr(lowerInto(&keyBuf, b[a.ks:a.ke]), vals[j], nest)
	}
	raw := ""
	if !t.selfClosing {
		raw = rawTextTag(name)
	}
	if len(content) > 0 && !w.done {
		if rawTag == "title" {
			content = unescapeText(content)
		}
		w.htmlText(raw, content, nest)
	}
	return n, false
}

// endTag reads an end tag, "</>" (nothing) or a bogus comment.
func (w *walker) endTag(b []byte, nest int) (int, bool) {
	if len(b) < 3 {
		return 0, false
	}
	c := b[2]
	switch {
	case c == '>':
		return 3, false
	case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
	default:
		return closeAngle(b, 2), false
	}
	t := &w.tags[nest]
	ok, bail := parseTag(b, 2, t)
	if !ok {
		return 0, bail
	}
	var nameBuf [64]byte
	if !inlineTag(lowerInto(&nameBuf, t.name)) {
		w.flushText()
	}
	return t.len, false
}

// rawEnd finds the end of a raw text element's content in b: the first
// "</" + tag (any case) followed by white space, '/' or '>'.
func rawEnd(b []byte, tag string) (int, bool) {
	for i := 0; ; {
		k := bytes.Index(b[i:], []byte("</"))
		if k < 0 {
			return 0, false
		}
		k += i
		e := k + 2 + len(tag)
		if e >= len(b) {
			return 0, false
		}
		if equalFoldASCII(b[k+2:e], []byte(tag)) {
			if c := b[e]; tagSpace(c) || c == '/' || c == '>' {
				return k, true
			}
		}
		i = k + 2
	}
}

// convertNewlines turns CR LF and lone CR into LF, as the tokenizer does
// in attribute values (a URL's Original keeps what is left).
func convertNewlines(b []byte) []byte {
	if bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\r' {
			c = '\n'
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		}
		out = append(out, c)
	}
	return out
}

// unescapeAttr decodes the character references in an attribute value as
// the tokenizer's TagAttr does. That differs from text (html.UnescapeString)
// only for a named reference that text decodes by a prefix ("&notit;" is
// "¬it;" in text, unchanged in an attribute) or that is followed by '='
// without a ';' ("&not=1" in a query string). It returns false for a value
// with such a reference, which the tokenizer then decodes.
func unescapeAttr(b []byte) ([]byte, bool) {
	a := bytes.IndexByte(b, '&')
	if a < 0 {
		return b, true
	}
	// What the attribute rules decode, the text rules decode too: a value
	// text decoding leaves alone (a query string's "&b=2") is decoded.
	all := html.UnescapeString(string(b))
	if len(all) == len(b) && all == string(b) {
		return b, true
	}
	for rest := b[a:]; len(rest) > 0; {
		k := bytes.IndexByte(rest, '&')
		if k < 0 {
			break
		}
		rest = rest[k+1:]
		n := 0
		for n < len(rest) && ('a' <= rest[n] && rest[n] <= 'z' || 'A' <= rest[n] && rest[n] <= 'Z' || '0' <= rest[n] && rest[n] <= '9') {
			n++
		}
		if n == 0 {
			continue // "&#..." is read alike, "& " is no reference
		}
		ref := "&" + string(rest[:n])
		semi := n < len(rest) && rest[n] == ';'
		if semi {
			ref += ";"
		}
		u := html.UnescapeString(ref)
		switch {
		case u == ref:
			// No reference either way.
		case !semi && n < len(rest) && rest[n] == '=':
			return nil, false
		case semi && u != ";" && u[len(u)-1] == ';', !semi && isAlnum(u[len(u)-1]):
			// Decoded by a prefix of the name, which only text does.
			return nil, false
		}
		rest = rest[n:]
	}
	return []byte(all), true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
