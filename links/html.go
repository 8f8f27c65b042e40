package links

import (
	"bytes"
	"errors"
	"io"

	"golang.org/x/net/html"
)

// maxHTMLNest bounds HTML parsed inside HTML: <noscript> content and the
// srcdoc attribute, which the tokenizer hands over as text.
const maxHTMLNest = 2

// htmlTokens scans an HTML body with the x/net/html tokenizer, which also decodes
// character references (&amp;) in text and attribute values. It looks at
// the attributes that hold URLs, at other attributes that contain "://", at
// CSS, and at the visible text. Text is joined across inline tags, as it is
// displayed: "http://ev<b></b>il.example" reads as one URL.
func (w *walker) htmlTokens(r io.Reader, nest int) error {
	z := html.NewTokenizer(r)
	var raw string // raw-text element whose content is the next text token
	for !w.done {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			w.flushText()
			return z.Err()
		case html.TextToken:
			w.htmlText(raw, z.Text(), nest)
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if !inlineTag(name) {
				w.flushText()
			}
			for hasAttr && !w.done {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				w.attr(k, v, nest)
			}
			raw = ""
			if tt == html.StartTagToken {
				raw = rawTextTag(name)
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if !inlineTag(name) {
				w.flushText()
			}
			raw = ""
		}
	}
	w.flushText()
	return errStopped
}

// htmlText handles one text token; raw names the element it is the raw
// content of, if any.
func (w *walker) htmlText(raw string, text []byte, nest int) {
	switch raw {
	case "script":
		// Mail clients do not run scripts; their text is not shown.
	case "style":
		w.flushText()
		w.source, w.schemeless = "css", false
		w.feedText(text)
		w.flushText()
	case "noscript", "noframes", "noembed":
		// Shown by mail clients (which run no scripts and have no
		// frames), and it is markup: parse it as such.
		w.flushText()
		if nest < maxHTMLNest {
			w.html(bytes.NewReader(text), nest+1)
			return
		}
		w.source, w.schemeless = "html", w.x.schemeless
		w.feedText(text)
		w.flushText()
	default:
		w.source, w.schemeless = "html", w.x.schemeless
		w.feedText(text)
	}
}

// rawTextTag returns the name of an element whose content the tokenizer
// returns as one text token, when it needs handling other than as text.
func rawTextTag(name []byte) string {
	switch string(name) {
	case "script", "style", "noscript", "noframes", "noembed":
		return string(name)
	}
	return ""
}

// inlineTag reports the phrasing elements that do not separate text when it
// is displayed.
func inlineTag(name []byte) bool {
	switch string(name) {
	case "a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "data", "del",
		"dfn", "em", "font", "i", "ins", "kbd", "mark", "nobr", "q", "s", "samp",
		"small", "span", "strike", "strong", "sub", "sup", "time", "tt", "u",
		"var", "wbr":
		return true
	}
	return false
}

// attr looks for URLs in one attribute.
func (w *walker) attr(key, val []byte, nest int) {
	if len(val) == 0 {
		return
	}
	switch string(key) {
	case "href", "src", "action", "formaction", "background", "cite", "data",
		"poster", "longdesc", "codebase", "manifest", "dynsrc", "lowsrc",
		"xlink:href", "profile", "icon":
		w.attrURL(urlAttrName(key), val)
	case "srcset", "imagesrcset":
		w.srcset(string(key), val)
	case "ping", "archive":
		for _, f := range bytes.FieldsFunc(val, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' || r == '\r' || r == '\f' }) {
			w.attrURL(string(key), f)
		}
	case "style":
		w.attrText("css", val, false)
	case "srcdoc":
		if nest < maxHTMLNest {
			w.flushText()
			w.html(bytes.NewReader(val), nest+1)
			return
		}
		w.attrText("srcdoc", val, false)
	default:
		// Event handlers ("location='http://...'"), <meta http-equiv=refresh
		// content="0;url=http://...">, data-* attributes and the like.
		if bytes.Contains(val, []byte("://")) {
			w.attrText(string(key), val, false)
		}
	}
}

// urlAttrName returns the name of a URL attribute as a constant, which
// URL.Source can keep without a copy of the walker's buffer.
func urlAttrName(key []byte) string {
	switch string(key) {
	case "href":
		return "href"
	case "src":
		return "src"
	case "action":
		return "action"
	case "background":
		return "background"
	}
	return string(key)
}

// attrURL takes an attribute value that is a URL, as a browser would parse
// it. A value that is not a web URL but holds one ("javascript:...") is
// scanned as text.
func (w *walker) attrURL(key string, val []byte) {
	if w.handled(val) {
		return
	}
	p, err := parseURL(string(val), w.lim.MaxURLLength)
	switch {
	case err == nil:
		w.add(&p, key, "", 0)
	case errors.Is(err, ErrRelative) || errors.Is(err, ErrScheme):
		if bytes.Contains(val, []byte("://")) {
			w.attrText(key, val, false)
		}
	default:
		w.dropped(val, err)
	}
}

// attrText scans an attribute value as text of its own, leaving any text
// being joined untouched.
func (w *walker) attrText(source string, val []byte, schemeless bool) {
	src, sl := w.source, w.schemeless
	w.source, w.schemeless = source, schemeless
	w.scanTokens(val)
	w.source, w.schemeless = src, sl
}

// srcset parses an image candidate list (HTML §4.8.4.3.1): URLs separated
// by commas, each optionally followed by a descriptor ("2x", "480w").
func (w *walker) srcset(key string, val []byte) {
	for len(val) > 0 {
		val = bytes.TrimLeft(val, " \t\n\r\f,")
		if len(val) == 0 {
			return
		}
		end := bytes.IndexAny(val, " \t\n\r\f")
		if end < 0 {
			end = len(val)
		}
		u := bytes.TrimRight(val[:end], ",")
		w.attrURL(key, u)
		val = val[end:]
		if len(u) == end { // a descriptor may follow: skip to the next comma
			if i := bytes.IndexByte(val, ','); i >= 0 {
				val = val[i+1:]
			} else {
				return
			}
		}
	}
}
