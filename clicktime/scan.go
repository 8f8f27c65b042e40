package clicktime

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// link is one link found in a decoded body: text[start:end] is what gets
// replaced, target the URL it leads to (for HTML, the attribute value with
// its character references resolved).
type link struct {
	start, end int
	target     string
}

// span is a range of a decoded body in which bytes below 0x80 are ASCII
// characters, so URLs may be looked for in the raw bytes.
type span struct{ start, end int }

// normCharset lower-cases a MIME charset name and removes quotes.
func normCharset(cs string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(cs), `"'`))
}

// asciiSegments returns where URLs may be looked for in the raw bytes of
// text in charset cs, without decoding it: URLs are ASCII, and rewriting
// ASCII bytes in place is right wherever a byte below 0x80 is that ASCII
// character.
//
//   - ASCII-compatible charsets (UTF-8, ISO-8859-*, windows-125x, EUC-*,
//     KOI8-*, and unknown ones, which in mail practically always are):
//     all of it.
//   - Double-byte charsets whose trailing bytes can fall in the ASCII
//     range (Shift_JIS, Big5, GBK, GB18030, CP949): everything but the
//     multi-byte characters, so a trailing byte is never taken for a
//     letter of a URL.
//   - ISO-2022 (-JP, -KR, -CN): only the runs in ASCII, between "ESC ( B"
//     (or the start) and the next escape sequence or Shift Out.
//   - UTF-16, UTF-32, UTF-7: nothing (not rewritten).
func asciiSegments(text []byte, cs string) []span {
	switch {
	case strings.HasPrefix(cs, "utf-16"), strings.HasPrefix(cs, "utf-32"), strings.HasPrefix(cs, "ucs-"),
		cs == "utf-7", cs == "unicode", cs == "unicode-1-1-utf-7", cs == "csunicode":
		return nil
	case strings.HasPrefix(cs, "iso-2022-"), cs == "csiso2022jp", cs == "csiso2022kr":
		return iso2022Segments(text)
	}
	switch cs {
	case "shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "cp932", "windows-31j", "ms932":
		return dbcsSegments(text, isSJISLead, false)
	case "big5", "big5-hkscs", "cp950", "x-x-big5", "gbk", "cp936", "x-gbk", "windows-936", "ms936",
		"cp949", "ks_c_5601-1987", "uhc", "windows-949", "ks_c_5601", "johab":
		return dbcsSegments(text, isHighLead, false)
	case "gb18030":
		return dbcsSegments(text, isHighLead, true)
	}
	return []span{{0, len(text)}}
}

func isSJISLead(c byte) bool { return c >= 0x81 && c <= 0x9f || c >= 0xe0 && c <= 0xfc }
func isHighLead(c byte) bool { return c >= 0x81 && c <= 0xfe }

// dbcsSegments splits text around its multi-byte characters: a lead byte
// takes the next byte with it (GB18030: the next three, when the next is a
// digit, §6 of the standard's four-byte form).
func dbcsSegments(text []byte, lead func(byte) bool, gb18030 bool) []span {
	var segs []span
	st := 0
	for i := 0; i < len(text); {
		c := text[i]
		if c < 0x80 {
			i++
			continue
		}
		if i > st {
			segs = append(segs, span{st, i})
		}
		n := 1
		if lead(c) && i+1 < len(text) {
			n = 2
			if gb18030 && text[i+1] >= '0' && text[i+1] <= '9' && i+3 < len(text) {
				n = 4
			}
		}
		i += n
		st = i
	}
	if st < len(text) {
		segs = append(segs, span{st, len(text)})
	}
	return segs
}

// iso2022Segments returns the ASCII runs of ISO-2022 text (RFC 1468,
// RFC 1557, RFC 1922): the text starts in ASCII; "ESC ( B" returns to it;
// any other designation, and Shift Out, leave it (Shift In returns, for
// the -KR and -CN forms). JIS X 0201 Roman ("ESC ( J") is not ASCII: its
// 0x5C and 0x7E are yen and overline.
func iso2022Segments(text []byte) []span {
	var segs []span
	ascii, st := true, 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == 0x1b || c == 0x0e || c == 0x0f || c >= 0x80:
			if ascii && i > st {
				segs = append(segs, span{st, i})
			}
			switch {
			case c == 0x1b && i+2 < len(text) && text[i+1] == '(' && text[i+2] == 'B':
				ascii = true
				i += 2
			case c == 0x0f:
				ascii = true
			case c >= 0x80:
				// Not 7-bit: ISO-2022 does not allow it; stay as we are.
			default:
				ascii = false
			}
			st = i + 1
		}
	}
	if ascii && st < len(text) {
		segs = append(segs, span{st, len(text)})
	}
	return segs
}

// isURLChar: the ASCII characters a URL in text may hold (RFC 3986's
// unreserved, reserved and "%"); quotes, angle brackets, braces, "|",
// "\", "^" and "`" end it, as most mail clients' link detection does.
func isURLChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return strings.IndexByte("\"<>{}|\\^`", c) < 0
}

// findTextLinks finds the http and https URLs written in plain text.
func findTextLinks(text []byte, segs []span, cs string) []link {
	var links []link
	utf8ish := cs == "" || cs == "utf-8" || cs == "utf8" || cs == "us-ascii"
	for _, sg := range segs {
		seg := text[sg.start:sg.end]
		for i := 0; i < len(seg); {
			k := indexFold(seg[i:], "http")
			if k < 0 {
				break
			}
			s := i + k
			i = s + 4
			n := 0
			switch {
			case hasPrefixFold(seg[s:], "http://"):
				n = 7
			case hasPrefixFold(seg[s:], "https://"):
				n = 8
			default:
				continue
			}
			if s > 0 && isAlnum(seg[s-1]) {
				continue // "xhttp://": not a link a client would make
			}
			e := s + n
			for e < len(seg) && isURLChar(seg[e]) {
				e++
			}
			e = s + trimURL(seg[s:e])
			i = max(e, s+n)
			if e <= s+n {
				continue
			}
			if e < len(seg) && seg[e] >= 0x80 && !(utf8ish && cjkFollows(seg[e:])) {
				// Text runs on in another script. East Asian text ends the
				// URL (Japanese puts no space before it); anything else
				// may be an IRI whose end each client guesses in its own
				// way, so the link is left alone (an empty target).
				links = append(links, link{sg.start + s, sg.start + e, ""})
				continue
			}
			links = append(links, link{sg.start + s, sg.start + e, string(seg[s:e])})
		}
	}
	return links
}

// trimURL drops what ends a sentence rather than the URL: trailing
// punctuation, and closing brackets without an opening one in the URL.
func trimURL(u []byte) int {
	e := len(u)
	parens, brackets := -1, -1 // unbalanced counts, computed when needed
	for e > 0 {
		c := u[e-1]
		switch {
		case strings.IndexByte(".,;:!?'*", c) >= 0:
			e--
			continue
		case c == ')':
			if parens < 0 {
				parens = bytes.Count(u[:e], []byte(")")) - bytes.Count(u[:e], []byte("("))
			}
			if parens > 0 {
				parens--
				e--
				continue
			}
		case c == ']':
			if brackets < 0 {
				brackets = bytes.Count(u[:e], []byte("]")) - bytes.Count(u[:e], []byte("["))
			}
			if brackets > 0 {
				brackets--
				e--
				continue
			}
		}
		break
	}
	return e
}

// cjkFollows reports whether b starts with a CJK character, kana, hangul,
// or full-width form or punctuation (UTF-8).
func cjkFollows(b []byte) bool {
	r, _ := utf8.DecodeRune(b)
	return r >= 0x2e80 && r <= 0x9fff || r >= 0xac00 && r <= 0xd7af || r >= 0xf900 && r <= 0xfaff ||
		r >= 0xfe30 && r <= 0xfe4f || r >= 0xff00 && r <= 0xffef
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func hasPrefixFold(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if lower(b[i]) != p[i] {
			return false
		}
	}
	return true
}

// indexFold finds the lower-case ASCII word p in b, ignoring case.
func indexFold(b []byte, p string) int {
	for i := 0; i+len(p) <= len(b); {
		k := bytes.IndexAny(b[i:], p[:1]+strings.ToUpper(p[:1]))
		if k < 0 {
			return -1
		}
		i += k
		if hasPrefixFold(b[i:], p) {
			return i
		}
		i++
	}
	return -1
}

// findHTMLLinks finds the href of every <a> and <area> tag. The tags are
// found with x/net/html's tokenizer (which knows comments, scripts and
// the other raw-text elements as a browser does); the value's position in
// the tag is found by lexing the tag's own bytes the same way
// (tagAttrs), so that only the value is replaced.
func findHTMLLinks(text []byte, segs []span, cs string) []link {
	var links []link
	z := html.NewTokenizer(bytes.NewReader(text))
	utf8ish := cs == "" || cs == "utf-8" || cs == "utf8" || cs == "us-ascii"
	off := 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		start := off
		off += len(z.Raw())
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken || off > len(text) {
			continue
		}
		name, hasAttr := z.TagName()
		if !hasAttr || !(string(name) == "a" || string(name) == "area") {
			continue
		}
		var href string
		found := false
		for hasAttr {
			var k, v []byte
			k, v, hasAttr = z.TagAttr()
			if string(k) == "href" {
				href, found = string(v), true
				break
			}
		}
		if !found {
			continue
		}
		vs, ve, ok := hrefSpan(text[start:off])
		if !ok {
			continue
		}
		vs, ve = start+vs, start+ve
		if !inOneSegment(segs, vs, ve) || !utf8ish && !isASCII(href) {
			if looksWeb(href) {
				links = append(links, link{vs, ve, ""}) // unchanged
			}
			continue
		}
		if !looksWeb(href) {
			continue
		}
		links = append(links, link{vs, ve, href})
	}
	return links
}

// looksWeb: after what browsers strip, an http: or https: URL.
func looksWeb(s string) bool {
	s = strings.TrimLeft(s, " \t\r\n\f")
	b := []byte(s)
	return hasPrefixFold(b, "http:") || hasPrefixFold(b, "https:")
}

func inOneSegment(segs []span, s, e int) bool {
	for _, sg := range segs {
		if s >= sg.start && e <= sg.end {
			return true
		}
	}
	return false
}

// hrefSpan finds the value of the first href attribute in a start tag's
// raw bytes, following the HTML tokenizer's attribute states (WHATWG HTML
// §13.2.5.32-.39): names end at white space, "/", ">" or "="; a value is
// double-quoted, single-quoted or runs to white space or ">". It returns
// the value's offsets without quotes.
func hrefSpan(tag []byte) (int, int, bool) {
	i := 1 // "<"
	for i < len(tag) && !isHTMLSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	for i < len(tag) {
		for i < len(tag) && (isHTMLSpace(tag[i]) || tag[i] == '/') {
			i++
		}
		if i >= len(tag) || tag[i] == '>' {
			return 0, 0, false
		}
		ns := i
		i++ // a name may start with "="
		for i < len(tag) && !isHTMLSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' && tag[i] != '=' {
			i++
		}
		name := tag[ns:i]
		for i < len(tag) && isHTMLSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '=' {
			if isHref(name) {
				return 0, 0, false // href without a value
			}
			continue
		}
		i++
		for i < len(tag) && isHTMLSpace(tag[i]) {
			i++
		}
		var vs, ve int
		switch {
		case i < len(tag) && (tag[i] == '"' || tag[i] == '\''):
			q := tag[i]
			vs = i + 1
			k := bytes.IndexByte(tag[vs:], q)
			if k < 0 {
				return 0, 0, false
			}
			ve = vs + k
			i = ve + 1
		default:
			vs = i
			for i < len(tag) && !isHTMLSpace(tag[i]) && tag[i] != '>' {
				i++
			}
			ve = i
		}
		if isHref(name) {
			return vs, ve, true
		}
	}
	return 0, 0, false
}

func isHref(name []byte) bool { return len(name) == 4 && hasPrefixFold(name, "href") }

func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}
