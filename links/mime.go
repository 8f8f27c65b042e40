package links

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // charset support for message.New
	"github.com/emersion/go-message/textproto"
	htmlcharset "golang.org/x/net/html/charset"
)

var (
	errHeaderTooBig = errors.New("header too big")
	errBudget       = errors.New("text budget used up")
	errStopped      = errors.New("extraction stopped")
)

// walker is the state of one Extract call.
type walker struct {
	x   *Extractor
	lim Limits
	res Result
	in  *inputReader // the input, whose limit decides whether to read ahead

	// seen and perHost index res.URLs by normalised form and host once
	// it is longer than smallSet (indexed); see kept.
	seen        map[string]struct{}
	perHost     map[string]int
	indexed     bool
	skippedDup  int          // links not kept because their host had enough
	raw         strSet       // link texts already handled
	textFn      func([]byte) // w.textURL, bound once
	slFn        func([]byte) // w.schemelessURL, bound once
	budget      int64
	done        bool
	stopNote    string
	omitted     int
	lastOmitted string

	// Text scanning context: where the text being fed comes from.
	label      string // MIME part label for URL.Part and notes
	source     string // URL.Source for text matches
	schemeless bool   // whether text may yield scheme-less URLs here
	pend       []byte // incomplete token carried between feeds
	scratch    []byte
	urlBuf     []URL // recycled backing array of res.URLs

	// The tag html is reading and its decoded attribute values: kept
	// behind a pointer so that recycling the walker does not zero them
	// (about 7 KB with pointers) for every message.
	*tagState
}

// tagState is the tag html is reading and its decoded attribute values,
// per level of HTML nested in HTML: kept with the walker rather than zeroed
// on the stack for every tag. Every tag sets what it uses.
type tagState struct {
	tags     [maxHTMLNest + 1]parsedTag
	attrVals [maxHTMLNest + 1][maxTagAttrs][]byte
}

// walkers recycles walkers, whose maps, buffers and bound methods were a
// third of the allocations of extracting a typical message.
var walkers = sync.Pool{New: func() any {
	w := &walker{tagState: new(tagState)}
	w.textFn, w.slFn = w.textURL, w.schemelessURL
	return w
}}

// Beyond these sizes a recycled walker's maps and buffers are dropped
// rather than kept for the next message.
const (
	maxKeptEntries = 64
	maxKeptBuf     = 64 << 10
)

func newWalker(x *Extractor) *walker {
	w := walkers.Get().(*walker)
	w.x, w.lim, w.budget = x, x.lim, x.lim.MaxBytes
	w.res.URLs = w.urlBuf[:0]
	if w.seen == nil {
		w.seen = make(map[string]struct{})
		w.perHost = make(map[string]int)
	}
	return w
}

// release returns w, whose result has been copied, to walkers.
func (w *walker) release() {
	seen, perHost, raw := w.seen, w.perHost, w.raw
	if len(seen) > maxKeptEntries || len(perHost) > maxKeptEntries {
		seen, perHost = nil, nil
	}
	clear(seen)
	clear(perHost)
	raw.reset(maxKeptEntries)
	pend, scratch := w.pend[:0], w.scratch[:0]
	if cap(pend) > maxKeptBuf {
		pend = nil
	}
	if cap(scratch) > maxKeptBuf {
		scratch = nil
	}
	urls := w.res.URLs[:cap(w.res.URLs)]
	clear(urls) // drop the strings of the last message
	if len(urls) > maxKeptEntries {
		urls = nil
	}
	*w = walker{seen: seen, perHost: perHost, raw: raw, pend: pend, scratch: scratch, urlBuf: urls[:0], textFn: w.textFn, slFn: w.slFn, tagState: w.tagState}
	walkers.Put(w)
}

func (w *walker) finish() *Result {
	if w.skippedDup > 0 {
		w.note("%d more links skipped on hosts that already have %d URLs", w.skippedDup, w.lim.MaxURLsPerHost)
	}
	switch {
	case w.omitted == 1:
		w.res.Notes = append(w.res.Notes, w.lastOmitted)
	case w.omitted > 1:
		w.res.Notes = append(w.res.Notes, fmt.Sprintf("%d more notes", w.omitted))
	}
	if w.stopNote != "" {
		w.res.Notes = append(w.res.Notes, w.stopNote)
	}
	return &w.res
}

// note records one line for the result. The first maxNotes-2 are kept; the
// rest are counted, so that the count and a stop note always fit.
func (w *walker) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if len(w.res.Notes) < maxNotes-2 {
		w.res.Notes = append(w.res.Notes, s)
		return
	}
	w.omitted++
	w.lastOmitted = s
}

// skip records that a limit left content out, without stopping.
func (w *walker) skip(format string, args ...any) {
	w.res.Truncated = true
	w.note(format, args...)
}

// stop ends the extraction because a limit was reached.
func (w *walker) stop(format string, args ...any) {
	if w.done {
		return
	}
	w.done = true
	w.res.Truncated = true
	w.stopNote = fmt.Sprintf(format, args...)
}

// inputReader counts the raw bytes read from the caller's reader and ends
// the input at MaxInputBytes or once the extraction has stopped, so that no
// layer keeps reading (a multipart reader drains every part it skips).
type inputReader struct {
	r    io.Reader
	left int64
	w    *walker
}

func (in *inputReader) Read(p []byte) (int, error) {
	if in.w.done {
		return 0, errStopped
	}
	if in.left <= 0 {
		// A message of exactly MaxInputBytes is complete, not cut.
		var probe [1]byte
		if n, err := in.r.Read(probe[:]); n == 0 && err == io.EOF {
			return 0, io.EOF
		}
		in.w.stop("stopped after %d bytes of input", in.w.lim.MaxInputBytes)
		return 0, errStopped
	}
	if int64(len(p)) > in.left {
		p = p[:in.left]
	}
	n, err := in.r.Read(p)
	in.left -= int64(n)
	return n, err
}

// budgetReader charges decoded text against MaxBytes.
type budgetReader struct {
	r io.Reader
	w *walker
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.w.done {
		return 0, errStopped
	}
	if b.w.budget <= 0 {
		return 0, errBudget
	}
	if int64(len(p)) > b.w.budget {
		p = p[:b.w.budget]
	}
	n, err := b.r.Read(p)
	b.w.budget -= int64(n)
	b.w.res.Bytes += int64(n)
	return n, err
}

// fields are the header fields the walker uses.
type fields struct {
	contentType string
	encoding    string
	disposition string
}

func fieldsOf(h textproto.Header, f *fields) {
	f.contentType = h.Get("Content-Type")
	f.encoding = h.Get("Content-Transfer-Encoding")
	f.disposition = h.Get("Content-Disposition")
}

// maxField bounds the value kept of one header field.
const maxField = 8 << 10

// readHeader reads the header block of a message (RFC 5322 §2.2) keeping
// only the three MIME fields the walker needs, so that its memory does not
// grow with the header: go-message's parser keeps every field (about 80
// bytes of memory per byte of a header of short lines), and a header that
// is merely large must not stop the body from being decoded. Like mail
// clients, it skips lines that are not header fields (an mbox "From " line,
// garbage) instead of giving up, and reports how many it skipped. The first
// occurrence of a field wins, as with go-message's Get.
func readHeader(br *bufio.Reader) (f fields, skipped int, err error) {
	var cur *string // the kept field that continuation lines extend
	first := true
	for {
		line, err := readLine(br)
		if len(line) == 0 {
			// A blank line ends the header; so does the end of input.
			return f, skipped, err
		}
		if line[0] == ' ' || line[0] == '\t' {
			if first {
				skipped++
			} else if cur != nil && len(*cur) < maxField {
				// RFC 5322 §2.2.3 unfolding.
				v := string(bytes.TrimSpace(line))
				if *cur != "" {
					v = *cur + " " + v
				}
				*cur = cutString(v, maxField)
			}
		} else {
			cur = nil
			k := bytes.IndexByte(line, ':')
			key := bytes.TrimRight(line[:max(k, 0)], " \t")
			if k <= 0 || !validKey(key) {
				skipped++
			} else {
				var dst *string
				switch {
				case bytes.EqualFold(key, []byte("Content-Type")):
					dst = &f.contentType
				case bytes.EqualFold(key, []byte("Content-Transfer-Encoding")):
					dst = &f.encoding
				case bytes.EqualFold(key, []byte("Content-Disposition")):
					dst = &f.disposition
				}
				if dst != nil && *dst == "" {
					*dst = cutString(string(bytes.TrimSpace(line[k+1:])), maxField)
					cur = dst
				}
			}
		}
		first = false
		if err != nil {
			return f, skipped, err
		}
	}
}

// readLine returns the next line without its line ending, cut at maxField
// bytes (the rest of a longer line is read and dropped). The slice is only
// valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// Keep the start (enough for a key), drop the rest of the line.
		keep := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = br.ReadSlice('\n')
			if room := maxField - len(keep); room > 0 {
				keep = append(keep, line[:min(room, len(line))]...)
			}
		}
		line = keep
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, err
}

// validKey: RFC 5322 §3.6.8 field names are printable ASCII without ":".
func validKey(k []byte) bool {
	for _, c := range k {
		if c < 33 || c > 126 {
			return false
		}
	}
	return len(k) > 0
}

// message reads one message (the input, or an attached message/rfc822)
// from r: a header block, then its body.
func (w *walker) message(r io.Reader) {
	in := &inputReader{r: r, left: w.lim.MaxInputBytes, w: w}
	w.in = in
	w.readMessage(in, "", 0, true)
}

// headerReaders recycles readMessage's 4 KiB readers, one per message.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// mem says that r is the input or read from memory, so that reading it
// ahead changes nothing but when the bytes are read (see preRead).
func (w *walker) readMessage(r io.Reader, path string, depth int, mem bool) {
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		headerReaders.Put(br)
	}()
	f, skipped, err := readHeader(br)
	where := "message"
	if path != "" {
		where = "part " + path
	}
	if skipped > 0 {
		w.note("%s: %d malformed header lines skipped", where, skipped)
	}
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	case errors.Is(err, errStopped):
		return
	default:
		w.note("%s: header: %v", where, err)
		return
	}
	w.entity(f, br, path, depth, true, "text/plain", mem)
}

// leafLabel is the IMAP part number of a non-multipart entity: the body of a
// message is part 1 of that message.
func leafLabel(path string, msgBody bool) string {
	switch {
	case path == "":
		return "1"
	case msgBody:
		return path + ".1"
	}
	return path
}

func joinPath(path string, i int) string {
	if path == "" {
		return strconv.Itoa(i)
	}
	return path + "." + strconv.Itoa(i)
}

// entity handles one MIME entity whose header has been read; mem as for
// readMessage.
func (w *walker) entity(f fields, body io.Reader, path string, depth int, msgBody bool, defType string, mem bool) {
	if w.done {
		return
	}
	label := leafLabel(path, msgBody)
	if w.res.Parts >= w.lim.MaxParts {
		w.stop("stopped after %d MIME parts", w.lim.MaxParts)
		return
	}
	w.res.Parts++
	if depth > w.lim.MaxDepth {
		w.skip("part %s: nested deeper than %d, skipped", label, w.lim.MaxDepth)
		return
	}
	mt, params := defType, ctParams{}
	if f.contentType != "" {
		mt, params = contentTypeOf(f.contentType)
		if mt == "" {
			// RFC 2045 §5.2: an unparseable Content-Type means the default.
			mt = defType
		}
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		where := "message"
		if path != "" {
			where = "part " + path
		}
		w.multipart(body, mt, params.boundary, path, where, depth, mem)
	case mt == "message/rfc822" || mt == "message/global":
		// RFC 2046 §5.2.1 allows only 7bit, 8bit or binary here, but
		// base64 is seen in the wild; decoding it costs nothing.
		r, _ := w.decode(f, "", body, label)
		if path == "" {
			path = "1"
		}
		w.readMessage(r, path, depth+1, mem)
	default:
		html, ok := leafKind(mt, params, f.disposition)
		if !ok {
			return
		}
		cs := ""
		if strings.HasPrefix(mt, "text/") {
			cs = strings.ToLower(strings.TrimSpace(params.charset))
		}
		r, sanitized := w.decode(f, cs, body, label)
		w.leafTextDecoded(r, label, html, cs == "", sanitized)
	}
}

// leafKind says whether an entity is scanned, and as HTML or as plain text.
// Besides text/*, an attachment named *.htm(l) is HTML whatever its type:
// HTML attachments are a common phishing vehicle.
func leafKind(mt string, params ctParams, disposition string) (html, ok bool) {
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml":
		return true, true
	case strings.HasPrefix(mt, "text/"):
		return false, true
	}
	name := params.name
	if _, dp, err := mime.ParseMediaType(disposition); err == nil && dp["filename"] != "" {
		name = dp["filename"]
	}
	name = strings.ToLower(name)
	if strings.HasSuffix(name, ".htm") || strings.HasSuffix(name, ".html") || strings.HasSuffix(name, ".xhtml") {
		return true, true
	}
	return false, false
}

// decode undoes the transfer encoding and the charset (when cs is set) with
// go-message, after the lenient pre-pass that keeps common breakage from
// ending the decode early.
func (w *walker) decode(f fields, cs string, body io.Reader, label string) (io.Reader, *b64Clean) {
	cte := strings.ToLower(strings.TrimSpace(f.encoding))
	if i := strings.IndexAny(cte, " \t;("); i >= 0 {
		cte = cte[:i]
	}
	if (cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary") && (cs == "" || cs == "utf-8" || cs == "us-ascii") {
		// Nothing to decode, as go-message would find after parsing the
		// header it is given below: most text parts.
		return body, nil
	}
	var b64 *b64Clean
	switch cte {
	case "quoted-printable":
		body = &qpClean{r: body}
	case "base64":
		b64 = &b64Clean{r: body}
		body = b64
	}
	var h message.Header
	ct := "application/octet-stream"
	if cs != "" {
		ct = mime.FormatMediaType("text/plain", map[string]string{"charset": cs})
		if ct == "" {
			w.note("part %s: unknown charset %q, read as-is", label, cutString(cs, 40))
			ct = "application/octet-stream"
		}
	}
	h.Set("Content-Type", ct)
	if cte != "" {
		h.Set("Content-Transfer-Encoding", cte)
	}
	e, err := message.New(h, body)
	switch {
	case message.IsUnknownEncoding(err):
		w.note("part %s: unknown transfer encoding %q, read undecoded", label, cutString(cte, 40))
	case message.IsUnknownCharset(err):
		w.note("part %s: unknown charset %q, read as-is", label, cutString(cs, 40))
	}
	return e.Body, b64
}

// leafText scans undecoded bytes as plain text (fallback for broken
// structure).
func (w *walker) leafText(r io.Reader, label string) {
	w.leafTextDecoded(r, label, false, false, nil)
}

func (w *walker) leafTextDecoded(r io.Reader, label string, html, sniff bool, b64 *b64Clean) {
	if html && sniff {
		r = sniffHTMLCharset(r)
	}
	br := &budgetReader{r: r, w: w}
	w.label = label
	var err error
	if html {
		err = w.html(br, 0)
	} else {
		w.source, w.schemeless = "text", w.x.schemeless
		err = w.plain(br)
	}
	if b64 != nil && b64.dropped > 0 && (err == nil || errors.Is(err, io.EOF)) {
		// Counted only for a part read to its end: after an error the
		// count would depend on how far the decoder had read ahead.
		w.note("part %s: %d bytes that are not base64 skipped", label, b64.dropped)
	}
	if b64 != nil && errors.Is(err, io.ErrUnexpectedEOF) && b64.err == io.EOF {
		w.note("part %s: base64 data ends in the middle of a group", label)
		return
	}
	w.readErr(label, err)
}

// readErr turns the error that ended reading a part into a note.
func (w *walker) readErr(label string, err error) {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, errStopped):
	case errors.Is(err, errBudget):
		w.stop("stopped after %d bytes of text", w.lim.MaxBytes)
	case errors.Is(err, io.ErrUnexpectedEOF):
		// A part cut off before its boundary; the multipart loop
		// notes the missing boundary.
	case errors.As(err, new(base64.CorruptInputError)):
		// Its offset counts from the decoder's buffer, not the part.
		w.note("part %s: invalid base64 data", label)
	default:
		w.note("part %s: %s", label, cutString(err.Error(), 120))
	}
}

// sniffHTMLCharset handles HTML parts whose MIME header names no charset:
// a <meta charset> or BOM in the first 1024 bytes (the HTML prescan) decides.
// Without one the bytes are read as-is (UTF-8 or ASCII-compatible), not
// guessed as windows-1252, which would garble UTF-8 IDNs.
func sniffHTMLCharset(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 4096)
	peek, _ := br.Peek(1024)
	enc, name, certain := htmlcharset.DetermineEncoding(peek, "text/html")
	if name == "utf-8" || (!certain && name == "windows-1252" && !containsFold(peek, "charset")) {
		return br
	}
	return enc.NewDecoder().Reader(br)
}

// multipart walks the parts of a multipart entity (RFC 2046 §5.1).
func (w *walker) multipart(body io.Reader, mt, boundary, path, where string, depth int, mem bool) {
	if boundary == "" {
		w.note("%s: %s without boundary, read as plain text", where, mt)
		w.leafText(body, leafLabel(path, false))
		return
	}
	if mem && !w.x.slowMIME {
		bp := preReadBufs.Get().(*[]byte)
		defer func() {
			if cap(*bp) <= 2*preReadMax {
				*bp = (*bp)[:0]
				preReadBufs.Put(bp)
			}
		}()
		data, rest, ok := w.preRead(body, bp)
		if ok && w.fastMultipart(data, mt, boundary, path, depth) {
			return
		}
		if !ok {
			body = rest
		} else if _, isMem := body.(*memBody); !isMem {
			body = newMemBody(data)
		}
	}
	g := guards.Get().(*partHeaderGuard)
	g.reset(body, []byte("--"+boundary), w.lim.MaxHeaderBytes)
	defer guards.Put(g)
	mr := textproto.NewMultipartReader(g, boundary)
	child := "text/plain"
	if mt == "multipart/digest" {
		child = "message/rfc822" // RFC 2046 §5.1.5
	}
	for i := 1; !w.done; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			if w.done {
				return
			}
			if errors.Is(g.err, errHeaderTooBig) {
				// The part itself is lost (its encoding is in that
				// header); what follows may still hold plain links.
				w.skip("part %s: header larger than %d bytes, rest of the multipart read as plain text", joinPath(path, i), w.lim.MaxHeaderBytes)
				// Skip the rest of that header: the line the guard
				// stopped in, then up to the blank line.
				br := bufio.NewReaderSize(g.rest(false), 4096)
				for first := true; ; first = false {
					line, err := readLine(br)
					if (len(line) == 0 && !first) || err != nil {
						break
					}
				}
				w.leafText(br, joinPath(path, i))
				return
			}
			if strings.HasSuffix(err.Error(), "EOF") {
				w.note("%s: %s ends without its closing boundary", where, mt)
				return
			}
			// Mail clients render what they can of a broken multipart;
			// the rest of it, from what the reader had buffered on, is
			// scanned as plain text so its links are not lost.
			w.note("%s: %s, rest read as plain text", where, cutString(err.Error(), 100))
			w.leafText(g.rest(true), joinPath(path, i))
			return
		}
		var f fields
		fieldsOf(p.Header, &f)
		w.entity(f, p, joinPath(path, i), depth+1, false, child, false)
	}
}

// parseContentType parses a Content-Type value (RFC 2045 §5.1), salvaging
// the media type and the boundary, charset and name parameters from values
// that mime.ParseMediaType rejects (unbalanced quotes, stray characters).
func parseContentType(v string) (string, map[string]string) {
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		if !strings.Contains(mt, "/") {
			mt = "" // no subtype: syntactically invalid
		}
		return mt, params
	}
	if mt == "" {
		t, _, _ := strings.Cut(v, ";")
		t = strings.ToLower(strings.TrimSpace(t))
		if a, b, ok := strings.Cut(t, "/"); ok && a != "" && b != "" && !strings.ContainsAny(t, " \t\"") {
			mt = t
		}
	}
	params = make(map[string]string, 3)
	for _, k := range []string{"boundary", "charset", "name"} {
		if val, ok := salvageParam(v, k); ok {
			params[k] = val
		}
	}
	return mt, params
}

func salvageParam(v, key string) (string, bool) {
	// Byte-wise ASCII case folding: strings.ToLower would change the
	// length of invalid UTF-8 and so the offsets into v.
	for i := 0; i+len(key) <= len(v); i++ {
		if !strings.EqualFold(v[i:i+len(key)], key) || (i > 0 && v[i-1] != ';' && v[i-1] != ' ' && v[i-1] != '\t') {
			continue
		}
		rest := strings.TrimLeft(v[i+len(key):], " \t")
		if !strings.HasPrefix(rest, "=") {
			continue
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		if strings.HasPrefix(rest, `"`) {
			rest = rest[1:]
			if k := strings.IndexByte(rest, '"'); k >= 0 {
				rest = rest[:k]
			}
		} else if k := strings.IndexAny(rest, "; \t"); k >= 0 {
			rest = rest[:k]
		}
		return rest, rest != ""
	}
	return "", false
}

func containsFold(b []byte, s string) bool {
	n := len(s)
	for i := 0; i+n <= len(b); i++ {
		if b[i]|0x20 == s[0]|0x20 && strings.EqualFold(string(b[i:i+n]), s) {
			return true
		}
	}
	return false
}

// partHeaderGuard sits between a multipart body and go-message's multipart
// reader, which reads each part's header without a size limit. It follows
// the line structure, knows when a part header is being read (after a
// delimiter line, RFC 2046 §5.1.1, until the blank line) and fails the read
// once that header exceeds max bytes.
//
// It also serves the body in fixed chunks and remembers the last chunk it
// served. The multipart reader buffers up to 4 KiB ahead; when it fails on
// broken structure, that buffered data is lost to the fallback scan unless
// it can be served again, and fixed chunks make what it had buffered
// independent of how the caller's reader splits its reads.
type partHeaderGuard struct {
	r    io.Reader
	dash []byte // "--" + boundary
	max  int

	lineLen  int  // bytes of the current line so far
	last     byte // last byte of the current line so far
	prefix   bool // the line so far can still be a delimiter line
	dashes   int  // "-" seen right after dash (2: close delimiter)
	started  bool // prefix was initialised for the current line
	inHeader bool
	hdr      int
	err      error

	bufs [2][guardChunk]byte
	prev []byte // the chunk served before cur
	cur  []byte // the chunk being served
	off  int    // served bytes of cur
	rerr error  // the error that ended r
}

// guards recycles partHeaderGuards (8 KiB of buffers each, one per
// multipart).
var guards = sync.Pool{New: func() any { return new(partHeaderGuard) }}

// reset prepares a recycled guard for a new multipart body.
func (g *partHeaderGuard) reset(r io.Reader, dash []byte, max int) {
	*g = partHeaderGuard{r: r, dash: dash, max: max}
}

// guardChunk is the multipart reader's buffer size.
const guardChunk = 4096

func (g *partHeaderGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.off == len(g.cur) {
		if g.rerr != nil {
			return 0, g.rerr
		}
		// Fill the other buffer; the current one becomes prev.
		next := g.bufs[0][:]
		if len(g.cur) > 0 && &g.cur[0] == &g.bufs[0][0] {
			next = g.bufs[1][:]
		}
		n := 0
		for n < len(next) && g.rerr == nil {
			var k int
			k, g.rerr = g.r.Read(next[n:])
			n += k
		}
		g.prev, g.cur, g.off = g.cur, next[:n], 0
		if n == 0 {
			return 0, g.rerr
		}
	}
	n := copy(p, g.cur[g.off:])
	g.scan(g.cur[g.off : g.off+n])
	g.off += n
	return n, g.err
}

// rest returns the rest of the input: with history, from the last
// guardChunk bytes served (which include whatever the multipart reader had
// buffered); without, from what was not served yet.
func (g *partHeaderGuard) rest(history bool) io.Reader {
	var served []byte
	if history {
		served = append(append(make([]byte, 0, len(g.prev)+g.off), g.prev...), g.cur[:g.off]...)
		served = served[max(0, len(served)-guardChunk):]
	}
	rs := []io.Reader{bytes.NewReader(served), bytes.NewReader(g.cur[g.off:])}
	if g.rerr == nil {
		rs = append(rs, g.r)
	}
	return io.MultiReader(rs...)
}

// scan follows the line structure of served bytes.
func (g *partHeaderGuard) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		g.line(seg)
		if g.inHeader {
			g.hdr += len(seg)
			if i >= 0 {
				g.hdr++
			}
			if g.hdr > g.max {
				g.err = errHeaderTooBig
				return
			}
		}
		if i < 0 {
			return
		}
		g.endLine()
		b = b[i+1:]
	}
}

// line feeds the next bytes of the current line (no '\n').
func (g *partHeaderGuard) line(seg []byte) {
	if len(seg) == 0 {
		return
	}
	if !g.started {
		g.started, g.prefix, g.dashes = true, true, 0
	}
	if g.prefix {
		for k, c := range seg {
			pos := g.lineLen + k
			switch {
			case pos < len(g.dash):
				if c != g.dash[pos] {
					g.prefix = false
				}
			case c == '-' && pos-len(g.dash) == g.dashes && g.dashes < 2:
				g.dashes++
			case g.dashes == 2:
				// close delimiter: whatever follows is transport padding
			case c == ' ' || c == '\t' || c == '\r':
			default:
				g.prefix = false
			}
			if !g.prefix {
				break
			}
		}
	}
	g.lineLen += len(seg)
	g.last = seg[len(seg)-1]
}

func (g *partHeaderGuard) endLine() {
	blank := g.lineLen == 0 || (g.lineLen == 1 && g.last == '\r')
	if g.inHeader {
		if blank {
			g.inHeader = false
		}
	} else if g.started && g.prefix && g.lineLen >= len(g.dash) && g.dashes != 2 {
		g.inHeader, g.hdr = true, 0
	}
	g.lineLen, g.last, g.started, g.prefix, g.dashes = 0, 0, false, false, 0
}

// qpClean prepares a quoted-printable body for mime/quotedprintable, which
// stops at the first control character and at any line longer than its 4 KiB
// buffer. Mail clients show such parts, so: controls other than tab, CR and
// LF become spaces, and a soft line break (RFC 2045 §6.7 rule 5) is inserted
// into lines longer than 900 bytes, outside any "=XX" escape.
type qpClean struct {
	r   io.Reader
	col int
	esc int // bytes of an "=XX" escape still to come
	in  [4096]byte
	buf []byte // output storage
	out []byte // output not yet returned
	err error
}

func (q *qpClean) Read(p []byte) (int, error) {
	for len(q.out) == 0 {
		if q.err != nil {
			return 0, q.err
		}
		n, err := q.r.Read(q.in[:])
		q.err = err
		q.out = q.clean(q.buf[:0], q.in[:n])
		q.buf = q.out
	}
	n := copy(p, q.out)
	q.out = q.out[n:]
	return n, nil
}

func (q *qpClean) clean(out, in []byte) []byte {
	for len(in) > 0 {
		seg := in
		nl := bytes.IndexByte(in, '\n')
		if nl >= 0 {
			seg = in[:nl]
		}
		if q.col+len(seg) < 900 {
			// The common case: the line stays short, only controls
			// need replacing.
			start := len(out)
			out = append(out, seg...)
			for i, c := range out[start:] {
				if qpControl[c] {
					out[start+i] = ' '
				}
			}
			q.col += len(seg)
			for _, c := range seg[max(0, len(seg)-2):] {
				q.track(c)
			}
		} else {
			for _, c := range seg {
				if qpControl[c] {
					c = ' '
				}
				if q.col >= 900 && q.esc == 0 && c != '\r' {
					out = append(out, '=', '\n')
					q.col = 0
				}
				out = append(out, c)
				q.col++
				q.track(c)
			}
		}
		if nl < 0 {
			break
		}
		out = append(out, '\n')
		q.col, q.esc = 0, 0
		in = in[nl+1:]
	}
	return out
}

// track follows "=XX" escapes, so that a soft break never splits one.
func (q *qpClean) track(c byte) {
	switch {
	case c == '=':
		q.esc = 2
	case q.esc > 0:
		q.esc--
	}
}

// qpControl marks the bytes mime/quotedprintable rejects unescaped.
var qpControl = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = c != '\t' && c != '\r' && c != '\n'
	}
	t[0x7f] = true
	return t
}()

// b64Clean prepares a base64 body for encoding/base64 (via go-message).
// It drops bytes outside the base64 alphabet (RFC 2045 §6.8 says a decoder
// must ignore them; encoding/base64 fails on them instead) and counts them.
// It also ends each read after a group that carries "=" padding: the
// streaming decoder accepts base64 that continues after padding (several
// encoded pieces glued together, which mail clients decode) only when a
// read ends there, so without this the result would depend on read sizes.
type b64Clean struct {
	r       io.Reader
	dropped int
	err     error // the error that ended the input
	buf     [4096]byte
	n, off  int  // filtered bytes in buf, bytes of them served
	group   int  // bytes of the current 4-byte group served
	padded  bool // the current group has "="
}

func (b *b64Clean) Read(p []byte) (int, error) {
	for b.off == b.n {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.r.Read(b.buf[:])
		b.err = err
		j := 0
		for _, c := range b.buf[:n] {
			if b64Byte[c] {
				b.buf[j] = c
				j++
			} else if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				b.dropped++
			}
		}
		b.n, b.off = j, 0
	}
	i := 0
	for i < len(p) && b.off < b.n {
		c := b.buf[b.off]
		p[i] = c
		i++
		b.off++
		b.padded = b.padded || c == '='
		if b.group++; b.group == 4 {
			end := b.padded
			b.group, b.padded = 0, false
			if end {
				break
			}
		}
	}
	return i, nil
}

var b64Byte = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = true
	}
	return t
}()
