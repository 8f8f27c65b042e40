package links

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// The multipart fast path. go-message's multipart reader parses every part
// header into a map of all its fields and reads part bodies through a
// line-oriented buffer, behind partHeaderGuard; for the small, well-formed
// multiparts that most mail is, that was a quarter of the cost of an
// extraction. When the whole multipart body is in memory (the message is
// read ahead into a buffer, up to preReadMax bytes), fastMultipart finds
// the parts itself, with slices and no per-field work, but only when the
// structure is one whose outcome it can tell exactly: every delimiter line
// exact, the close delimiter present, every part header plain and within
// MaxHeaderBytes. Anything else is handed to the go-message path, from the
// first byte, so the result is always the one that path gives (checked by
// TestMultipartFastSame and FuzzMultipartFast).

// preReadMax bounds what is read ahead to try the fast path. Larger
// messages are mostly attachments, whose cost is elsewhere.
const preReadMax = 256 << 10

// mpMaxLine bounds a delimiter or preamble line on the fast path: go-message
// fails on lines longer than its 4 KiB buffer.
const mpMaxLine = 2048

// memBody is a part body held in memory. Its type tells multipart that
// the body need not be read ahead.
type memBody struct {
	bytes.Reader
	b []byte
}

func newMemBody(b []byte) *memBody {
	m := &memBody{b: b}
	m.Reset(b)
	return m
}

// preReadBufs recycles the read-ahead buffers.
var preReadBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// replayReader gives back what a read-ahead took from r, then continues
// with r, or ends with the error that ended the read-ahead: the readers
// downstream never read on after an error, so r is not asked again.
type replayReader struct {
	buf []byte
	err error
	r   io.Reader
}

func (rr *replayReader) Read(p []byte) (int, error) {
	if len(rr.buf) > 0 {
		n := copy(p, rr.buf)
		rr.buf = rr.buf[n:]
		return n, nil
	}
	if rr.err != nil {
		return 0, rr.err
	}
	return rr.r.Read(p)
}

// preRead reads body ahead into *bp, up to preReadMax bytes. ok reports
// that body ended there (io.EOF); otherwise rest reads exactly what body
// would have given. It reads nothing when reading ahead could change the
// outcome: when the input's MaxInputBytes could be reached by it.
func (w *walker) preRead(body io.Reader, bp *[]byte) (data []byte, rest io.Reader, ok bool) {
	if m, isMem := body.(*memBody); isMem {
		if m.Len() == len(m.b) {
			return m.b, body, true
		}
		return nil, body, false
	}
	// Readers between the input and body buffer at most a few KiB each
	// and decoding never grows the data, so this keeps the read-ahead
	// from reaching the input limit, whose stop note depends on when it is
	// reached.
	if w.in == nil || w.in.left <= 2*preReadMax+64<<10 {
		return nil, body, false
	}
	buf := (*bp)[:0]
	var err error
	for err == nil && len(buf) <= preReadMax {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		var n int
		n, err = body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
	}
	*bp = buf
	if err == io.EOF {
		return buf, nil, true
	}
	return nil, &replayReader{buf: buf, err: err, r: body}, false
}

// mpPart is one part found by parseMultipart.
type mpPart struct {
	f    fields
	body []byte
}

// fastMultipart walks a multipart body held in data, as multipart would
// with go-message, and reports true; or it reports false having done
// nothing, when the structure is not one it reads exactly alike.
func (w *walker) fastMultipart(data []byte, mt, boundary, path string, depth int) bool {
	var arr [8]mpPart
	parts, ok := parseMultipart(data, boundary, w.lim.MaxHeaderBytes, arr[:0])
	if !ok {
		return false
	}
	child := "text/plain"
	if mt == "multipart/digest" {
		child = "message/rfc822" // RFC 2046 §5.1.5
	}
	for i := range parts {
		if w.done {
			break
		}
		w.entity(parts[i].f, newMemBody(parts[i].body), joinPath(path, i+1), depth+1, false, child, true)
	}
	return true
}

// validBoundary: RFC 2046 §5.1.1 bchars, 1 to 70 of them, not ending in a
// space. Boundaries outside it go to go-message.
func validBoundary(b string) bool {
	if len(b) == 0 || len(b) > 70 || b[len(b)-1] == ' ' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("'()+_,-./:=? "), c) >= 0:
		default:
			return false
		}
	}
	return true
}

func skipLWSP(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// boundaryEnd reports whether the byte after a dash-boundary makes it one
// for go-message's part reader (RFC 2046 §5.1.1 allows transport padding
// and "--"; the reader accepts these and decides on the line later).
func boundaryEnd(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-'
}

// parseMultipart splits data into parts the way go-message's multipart
// reader (with partHeaderGuard in front) does, or reports false when data
// holds anything whose handling there it does not reproduce exactly:
// delimiter lines with anything but transport padding after the boundary,
// no close delimiter, lines go-message's buffer cannot hold, part headers
// that are not plain "Key: value" fields within maxHdr bytes, and lines
// that look like delimiters to the guard but not to go-message.
func parseMultipart(data []byte, boundary string, maxHdr int, parts []mpPart) ([]mpPart, bool) {
	if !validBoundary(boundary) {
		return nil, false
	}
	var dashArr [72]byte
	dash := append(dashArr[:0], "--"...)
	dash = append(dash, boundary...)

	// The preamble, up to the first delimiter line, which also says
	// whether lines end in CRLF or, against the RFC, in LF alone.
	pos := 0
	var nl []byte
	for nl == nil {
		line, next, ok := mpLine(data, pos)
		if !ok {
			return nil, false
		}
		if bytes.HasPrefix(line, dash) {
			rest := skipLWSP(line[len(dash):])
			switch {
			case string(rest) == "\r\n":
				nl = []byte("\r\n")
			case string(rest) == "\n":
				nl = []byte("\n")
			case bytes.HasPrefix(line[len(dash):], []byte("--")) && string(skipLWSP(line[len(dash)+2:])) == "\r\n":
				// A close delimiter before any part: no parts.
				return parts, epilogueClean(data[next:], dash)
			default:
				return nil, false
			}
		}
		pos = next
	}
	var nlDashArr [74]byte
	nlDash := append(append(nlDashArr[:0], nl...), dash...)
	for {
		// pos is at the start of a part's header.
		var p mpPart
		bs, ok := parsePartHeader(data, pos, maxHdr, &p.f)
		if !ok {
			return nil, false
		}
		// The body ends before the nl that precedes the next
		// dash-boundary, or at once when it starts with one.
		var lineAt int
		if bytes.HasPrefix(data[bs:], dash) {
			if len(data) == bs+len(dash) || !boundaryEnd(data[bs+len(dash)]) {
				// go-message reads on; the guard may see a line start.
				return nil, false
			}
			p.body, lineAt = data[bs:bs], bs
		} else {
			end, ok := bodyEnd(data, bs, dash, nlDash)
			if !ok {
				return nil, false
			}
			p.body, lineAt = data[bs:end], end+len(nl)
		}
		parts = append(parts, p)
		line, next, ok := mpLine(data, lineAt)
		if !ok {
			// The close delimiter may end the input without a line
			// break.
			rest := data[lineAt:]
			if len(rest) <= mpMaxLine && bytes.HasPrefix(rest, dash) && bytes.HasPrefix(rest[len(dash):], []byte("--")) && len(skipLWSP(rest[len(dash)+2:])) == 0 {
				return parts, true
			}
			return nil, false
		}
		rest := line[len(dash):] // bodyEnd made sure of the prefix
		switch {
		case string(skipLWSP(rest)) == string(nl):
			pos = next
		case bytes.HasPrefix(rest, []byte("--")) && string(skipLWSP(rest[2:])) == string(nl):
			return parts, epilogueClean(data[next:], dash)
		default:
			return nil, false
		}
	}
}

// mpLine returns the line at pos with its "\n", and where the next one
// starts; false when there is no complete line or it is too long.
func mpLine(data []byte, pos int) (line []byte, next int, ok bool) {
	i := bytes.IndexByte(data[pos:min(len(data), pos+mpMaxLine)], '\n')
	if i < 0 {
		return nil, 0, false
	}
	return data[pos : pos+i+1], pos + i + 1, true
}

// bodyEnd finds where the body starting at bs ends: at the nl before the
// first dash-boundary that go-message's part reader takes as one. It
// refuses (false) a line start with the dash-boundary that the guard could
// take for a delimiter line but the part reader does not (one after a bare
// LF when lines end in CRLF), and a body without an end.
func bodyEnd(data []byte, bs int, dash, nlDash []byte) (int, bool) {
	crlf := len(nlDash) == len(dash)+2
	from := bs
	for {
		// Every dash-boundary at a line start, whatever precedes the LF.
		// The dash-boundary is searched for rather than the LF before
		// it, which starts every line.
		k := bytes.Index(data[from:], dash)
		if k < 0 {
			return 0, false
		}
		d := from + k // the dash-boundary
		from = d + 1  // boundaries may start with "-": occurrences overlap
		j := d - 1    // the LF before it, if any
		if j < bs || data[j] != '\n' {
			continue
		}
		after := d + len(dash)
		isEnd := after == len(data) || boundaryEnd(data[after])
		switch {
		case !crlf:
			if isEnd {
				return j, true
			}
		case j-1 >= bs && data[j-1] == '\r':
			if isEnd {
				return j - 1, true
			}
		case isEnd:
			// A bare LF then the boundary: the guard may take it
			// for a delimiter line.
			return 0, false
		}
	}
}

// epilogueClean reports whether the text after the close delimiter holds no
// line the guard could take for a delimiter line (it reads ahead into it).
func epilogueClean(data, dash []byte) bool {
	if bytes.HasPrefix(data, dash) {
		return false
	}
	var pat [73]byte
	p := append(append(pat[:0], '\n'), dash...)
	return !bytes.Contains(data, p)
}

// parsePartHeader reads the part header at pos into f as go-message's
// ReadHeader and Header.Get would (the first field of a name wins; lines
// unfolded, each trimmed of spaces and tabs, joined by one space), and
// returns where the body starts. It refuses what it does not read alike:
// a first line that is a continuation, a line without a colon or with a
// bare CR, an empty or invalid field name, no blank line, and a header the
// guard would find larger than maxHdr bytes.
func parsePartHeader(data []byte, pos, maxHdr int, f *fields) (int, bool) {
	start := pos
	var cur *string // the kept field continuation lines extend
	var got [3]bool
	curIdx := -1
	for first := true; ; first = false {
		i := bytes.IndexByte(data[pos:min(len(data), pos+mpMaxLine)], '\n')
		if i < 0 {
			return 0, false
		}
		line := data[pos : pos+i]
		pos += i + 1
		if pos-start > maxHdr {
			return 0, false
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return 0, false
		}
		if len(line) == 0 {
			return pos, true
		}
		if line[0] == ' ' || line[0] == '\t' {
			if first {
				return 0, false
			}
			if cur != nil {
				if v := trimLWSP(line); len(v) > 0 {
					if *cur != "" {
						*cur += " " + string(v)
					} else {
						*cur = string(v)
					}
				}
			}
			continue
		}
		cur = nil
		k := bytes.IndexByte(line, ':')
		if k < 0 {
			return 0, false
		}
		key := trimLWSP(line[:k])
		if !validKey(key) {
			return 0, false
		}
		curIdx = -1
		switch {
		case bytes.EqualFold(key, []byte("Content-Type")):
			curIdx, cur = 0, &f.contentType
		case bytes.EqualFold(key, []byte("Content-Transfer-Encoding")):
			curIdx, cur = 1, &f.encoding
		case bytes.EqualFold(key, []byte("Content-Disposition")):
			curIdx, cur = 2, &f.disposition
		}
		if curIdx >= 0 {
			if got[curIdx] {
				cur = nil // a later field of the same name: Get ignores it
				continue
			}
			got[curIdx] = true
			*cur = string(trimLWSP(line[k+1:]))
		}
	}
}

func trimLWSP(b []byte) []byte {
	b = skipLWSP(b)
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// ctParams are the Content-Type parameters the walker uses.
type ctParams struct {
	boundary, charset, name string
}

// contentTypeOf is parseContentType for the walker: the media type and the
// boundary, charset and name parameters. Plain values, which are nearly
// all, are read without the map and copies of mime.ParseMediaType.
func contentTypeOf(v string) (string, ctParams) {
	if mt, p, ok := simpleContentType(v); ok {
		return mt, p
	}
	mt, m := parseContentType(v)
	return mt, ctParams{boundary: m["boundary"], charset: m["charset"], name: m["name"]}
}

// simpleContentType reads v as mime.ParseMediaType would (and
// parseContentType after it) when v is plain: ASCII, type "/" subtype,
// then at most 8 parameters whose names have no "*" (RFC 2231) and whose
// values are tokens or quoted strings without backslashes. ok is false for
// anything else, and for what ParseMediaType rejects.
func simpleContentType(v string) (mt string, p ctParams, ok bool) {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return "", p, false // Unicode spaces: leave them to ParseMediaType
		}
	}
	base := v
	if i := strings.IndexByte(v, ';'); i >= 0 {
		base = v[:i]
	}
	t := trimASCIISpace(base)
	typ, rest := mimeToken(t)
	if typ == "" || len(rest) == 0 || rest[0] != '/' {
		return "", p, false
	}
	sub, rest := mimeToken(rest[1:])
	if sub == "" || rest != "" {
		return "", p, false
	}
	mt = strings.ToLower(t)

	var keys, vals [8]string
	n := 0
	v = v[len(base):]
	for {
		v = trimLeftASCIISpace(v)
		if v == "" {
			break
		}
		if v[0] != ';' {
			return "", p, false
		}
		r := trimLeftASCIISpace(v[1:])
		key, r := mimeToken(r)
		if key == "" {
			if trimASCIISpace(v) == ";" {
				break // a trailing semicolon
			}
			return "", p, false
		}
		if strings.IndexByte(key, '*') >= 0 || n == len(keys) {
			return "", p, false
		}
		key = strings.ToLower(key)
		r = trimLeftASCIISpace(r)
		if r == "" || r[0] != '=' {
			return "", p, false
		}
		r = trimLeftASCIISpace(r[1:])
		var val string
		if r != "" && r[0] == '"' {
			end := strings.IndexAny(r[1:], "\"\\\r\n")
			if end < 0 || r[1+end] != '"' {
				return "", p, false
			}
			val, r = r[1:1+end], r[2+end:]
		} else {
			val, r = mimeToken(r)
			if val == "" {
				return "", p, false
			}
		}
		for i := range n {
			if keys[i] == key && vals[i] != val {
				return "", p, false // ParseMediaType fails on this
			}
		}
		keys[n], vals[n] = key, val
		n++
		switch key {
		case "boundary":
			p.boundary = val
		case "charset":
			p.charset = val
		case "name":
			p.name = val
		}
		v = r
	}
	return mt, p, true
}

// mimeToken splits off an RFC 2045 token (ASCII, no controls, space or
// tspecials).
func mimeToken(s string) (token, rest string) {
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return s[:i], s[i:]
		}
	}
	return s, ""
}

var tokenByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c > ' ' && c < 0x7f && strings.IndexByte(`()<>@,;:\"/[]?=`, byte(c)) < 0
	}
	return t
}()

func isASCIISpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func trimLeftASCIISpace(s string) string {
	for len(s) > 0 && isASCIISpace(s[0]) {
		s = s[1:]
	}
	return s
}

func trimASCIISpace(s string) string {
	s = trimLeftASCIISpace(s)
	for len(s) > 0 && isASCIISpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}
