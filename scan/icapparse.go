package scan

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Bounds of the ICAP response parser. A response that passes any of them is
// a protocol error, never an allocation.
type icapLimits struct {
	maxLine        int   // one status, header or chunk-size line
	maxHeaders     int   // header fields, continuation lines included
	maxHeaderBytes int   // all ICAP header lines together
	maxEncapHeader int   // the encapsulated HTTP header sections together
	maxBody        int64 // encapsulated body bytes read and discarded
}

var defaultICAPLimits = icapLimits{
	maxLine:        8 << 10,
	maxHeaders:     100,
	maxHeaderBytes: 64 << 10,
	maxEncapHeader: 64 << 10,
	maxBody:        64 << 20,
}

// icapResponse is a parsed ICAP response (RFC 3507 §4.3.3). The
// encapsulated body is read and discarded, never kept: foxproxy only needs
// the verdict, not a modified message.
type icapResponse struct {
	Code   int
	Reason string
	Header textproto.MIMEHeader
	// Encap is the parsed Encapsulated header, nil when absent (100, 204).
	Encap []encapSection
	// HTTPStatus is the status code of the encapsulated HTTP response
	// (res-hdr), 0 when there is none.
	HTTPStatus int
	// BodyBytes counts the encapsulated body bytes read.
	BodyBytes int64
}

// encapSection is one entry of the Encapsulated header (RFC 3507 §4.4.1):
// "req-hdr=0, res-hdr=45, res-body=120".
type encapSection struct {
	Name   string
	Offset int
}

func (r *icapResponse) get(key string) string { return r.Header.Get(key) }

// connClose reports whether the server will close the connection after this
// response (RFC 3507 §4.3.3 refers to HTTP/1.1's Connection header).
func (r *icapResponse) connClose() bool {
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "close") {
				return true
			}
		}
	}
	return false
}

// protoErr is a complaint of the parser: the peer sent something invalid.
func protoErr(format string, args ...any) error {
	return &Error{Kind: ErrProtocol, Msg: fmt.Sprintf(format, args...)}
}

// readLine reads one line ending in LF (CRLF or bare LF), without the line
// ending, at most max bytes. EOF in the middle of a line is
// io.ErrUnexpectedEOF; EOF before any byte is io.EOF.
func readLine(br *bufio.Reader, max int) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return "", protoErr("line longer than %d bytes", max)
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// readICAPHead reads the status line and the header fields of one ICAP
// response, stopping after the empty line that ends them.
func readICAPHead(br *bufio.Reader, lim icapLimits) (*icapResponse, error) {
	status, err := readLine(br, lim.maxLine)
	if err != nil {
		return nil, err
	}
	// RFC 3507 §4.3.3: Status-Line = ICAP-Version SP Status-Code SP Reason-Phrase
	proto, rest, ok := strings.Cut(status, " ")
	if !ok || !strings.HasPrefix(proto, "ICAP/1.") {
		return nil, protoErr("bad status line %q", clip(status))
	}
	codeStr, reason, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || len(codeStr) != 3 || code < 100 || code > 599 {
		return nil, protoErr("bad status code in %q", clip(status))
	}
	resp := &icapResponse{Code: code, Reason: strings.TrimSpace(reason), Header: textproto.MIMEHeader{}}
	if !printable(resp.Reason) {
		resp.Reason = ""
	}
	var lastKey string
	total, count := 0, 0
	for {
		line, err := readLine(br, lim.maxLine)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if line == "" {
			break
		}
		total += len(line) + 2
		count++
		if count > lim.maxHeaders || total > lim.maxHeaderBytes {
			return nil, protoErr("response header too large")
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding, used by X-Violations-Found.
			if lastKey == "" {
				return nil, protoErr("continuation line before any header")
			}
			vs := resp.Header[lastKey]
			vs[len(vs)-1] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") || !printable(k) {
			return nil, protoErr("malformed header line %q", clip(line))
		}
		lastKey = textproto.CanonicalMIMEHeaderKey(k)
		resp.Header[lastKey] = append(resp.Header[lastKey], strings.TrimSpace(v))
	}
	if v := resp.get("Encapsulated"); v != "" {
		resp.Encap, err = parseEncapsulated(v)
		if err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// parseEncapsulated parses the Encapsulated header (RFC 3507 §4.4.1). The
// offsets must start at 0 and increase, and exactly one body entry
// (req-body, res-body, opt-body or null-body) must come last.
func parseEncapsulated(v string) ([]encapSection, error) {
	var secs []encapSection
	for _, part := range strings.Split(v, ",") {
		name, off, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, protoErr("malformed Encapsulated %q", clip(v))
		}
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "req-hdr", "res-hdr", "req-body", "res-body", "null-body", "opt-body":
		default:
			return nil, protoErr("unknown Encapsulated entity %q", clip(name))
		}
		n, err := strconv.Atoi(strings.TrimSpace(off))
		if err != nil || n < 0 || n > 1<<20 {
			return nil, protoErr("bad Encapsulated offset in %q", clip(v))
		}
		if len(secs) == 0 && n != 0 || len(secs) > 0 && n < secs[len(secs)-1].Offset {
			return nil, protoErr("Encapsulated offsets out of order in %q", clip(v))
		}
		if len(secs) > 0 && strings.HasSuffix(secs[len(secs)-1].Name, "-body") {
			return nil, protoErr("Encapsulated entity after the body in %q", clip(v))
		}
		secs = append(secs, encapSection{Name: name, Offset: n})
		if len(secs) > 4 {
			return nil, protoErr("too many Encapsulated entities")
		}
	}
	if !strings.HasSuffix(secs[len(secs)-1].Name, "-body") {
		return nil, protoErr("Encapsulated without a body entity: %q", clip(v))
	}
	return secs, nil
}

// readEncapsulated reads what the Encapsulated header announces: the HTTP
// header sections (their lengths are the offset differences) and then the
// chunked body, unless it is null-body. The body is discarded.
func (r *icapResponse) readEncapsulated(br *bufio.Reader, lim icapLimits) error {
	if len(r.Encap) == 0 {
		return nil
	}
	body := r.Encap[len(r.Encap)-1]
	if body.Offset > lim.maxEncapHeader {
		return protoErr("encapsulated headers larger than %d bytes", lim.maxEncapHeader)
	}
	for i, sec := range r.Encap[:len(r.Encap)-1] {
		n := r.Encap[i+1].Offset - sec.Offset
		hdr := make([]byte, n)
		if _, err := io.ReadFull(br, hdr); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if sec.Name == "res-hdr" {
			r.HTTPStatus = httpStatus(hdr)
		}
	}
	if body.Name == "null-body" {
		return nil
	}
	n, err := discardChunked(br, lim)
	r.BodyBytes = n
	return err
}

// httpStatus returns the code from "HTTP/1.1 403 Forbidden\r\n...", or 0.
func httpStatus(hdr []byte) int {
	line, _, _ := strings.Cut(string(hdr), "\n")
	_, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(line, "HTTP/") {
		return 0
	}
	code, err := strconv.Atoi(strings.TrimSpace(rest[:min(3, len(rest))]))
	if err != nil || code < 100 || code > 599 {
		return 0
	}
	return code
}

// discardChunked reads an HTTP/1.1 chunked body (RFC 3507 §4.4.1 requires
// chunked encapsulated bodies) up to and including its last chunk and the
// empty line after it, and returns the number of data bytes.
func discardChunked(br *bufio.Reader, lim icapLimits) (int64, error) {
	var total int64
	for {
		line, err := readLine(br, lim.maxLine)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
		sizeStr, _, _ := strings.Cut(line, ";") // chunk extensions, e.g. "0; ieof"
		sizeStr = strings.TrimSpace(sizeStr)
		if sizeStr == "" || len(sizeStr) > 15 || !isHex(sizeStr) {
			return total, protoErr("bad chunk size line %q", clip(line))
		}
		n, _ := strconv.ParseInt(sizeStr, 16, 64)
		if n == 0 {
			// Trailer fields are not used by ICAP; allow a few, then the
			// empty line.
			for i := 0; ; i++ {
				l, err := readLine(br, lim.maxLine)
				if err != nil {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return total, err
				}
				if l == "" {
					return total, nil
				}
				if i >= 8 {
					return total, protoErr("too many chunk trailer lines")
				}
			}
		}
		if n > lim.maxBody-total {
			return total, protoErr("encapsulated body larger than %d bytes", lim.maxBody)
		}
		m, err := io.CopyN(io.Discard, br, n)
		total += m
		if err != nil {
			return total, io.ErrUnexpectedEOF
		}
		if l, err := readLine(br, 2); err != nil || l != "" {
			if err != nil && !errors.As(err, new(*Error)) {
				return total, io.ErrUnexpectedEOF
			}
			return total, protoErr("chunk not followed by CRLF")
		}
	}
}

// readICAPResponse reads a whole response: head and encapsulated parts.
func readICAPResponse(br *bufio.Reader, lim icapLimits) (*icapResponse, error) {
	resp, err := readICAPHead(br, lim)
	if err != nil {
		return nil, err
	}
	if err := resp.readEncapsulated(br, lim); err != nil {
		return resp, err
	}
	return resp, nil
}

// classifyICAP turns a final RESPMOD response into a result or an error
// kind and message. sent is the size of the message the server received,
// -1 when it did not receive all of it (it answered a preview).
//
//	204                                    clean (RFC 3507 §4.6)
//	200 or 403 with X-Infection-Found,
//	  X-Violations-Found or X-Virus-ID      infected(name)
//	200 whose HTTP response is 403         infected("unknown")
//	200 echoing exactly the sent message   clean (the server ignored Allow: 204)
//	200 with any other body                infected("unknown"): the server
//	                                       removed or replaced content without
//	                                       naming it (c-icap's virus_scan in its
//	                                       default mode truncates infected
//	                                       bodies to nothing, no headers)
//	5xx                                    ErrUnavailable
//	other 4xx                              ErrScanFailed
//	anything else (100, 1xx, 2xx, 3xx)     ErrProtocol
func classifyICAP(r *icapResponse, sent int64) (Result, error, string) {
	switch {
	case r.Code == 204:
		return Clean, nil, ""
	case r.Code == 200 || r.Code == 403:
		if name, ok := threatName(r.Header); ok {
			return Infected(name), nil, ""
		}
		if r.Code == 403 || r.HTTPStatus == 403 {
			return Infected("unknown"), nil, ""
		}
		if len(r.Encap) == 0 {
			return Result{}, ErrProtocol, "ICAP 200 without Encapsulated"
		}
		if sent < 0 || r.BodyBytes != sent {
			return Infected("unknown"), nil, ""
		}
		return Clean, nil, ""
	case r.Code >= 500:
		return Result{}, ErrUnavailable, fmt.Sprintf("ICAP %d %s", r.Code, clip(r.Reason))
	case r.Code >= 400:
		return Result{}, ErrScanFailed, fmt.Sprintf("ICAP %d %s", r.Code, clip(r.Reason))
	}
	return Result{}, ErrProtocol, fmt.Sprintf("unexpected ICAP %d %s", r.Code, clip(r.Reason))
}

// threatName finds the threat's name in the de-facto infection headers
// (X-Infection-Found and X-Violations-Found from
// draft-stecher-icap-subid-00, and X-Virus-ID):
//
//	X-Infection-Found: Type=0; Resolution=2; Threat=Eicar-Test-Signature;
//	X-Violations-Found: 1 / filename / threat name / id / disposition
//	X-Virus-ID: Eicar-Test-Signature
//
// ok is false when none of them says something was found.
func threatName(h textproto.MIMEHeader) (name string, ok bool) {
	if vs, found := h["X-Infection-Found"]; found {
		for _, part := range strings.Split(vs[0], ";") {
			k, v, _ := strings.Cut(part, "=")
			if strings.EqualFold(strings.TrimSpace(k), "Threat") {
				if n := cleanName(v); n != "" {
					return n, true
				}
			}
		}
		return "unknown", true
	}
	if vs, found := h["X-Violations-Found"]; found {
		lines := strings.Split(vs[0], "\n")
		if cnt, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && cnt == 0 {
			// "0 violations" is not an infection.
		} else {
			if len(lines) >= 3 {
				if n := cleanName(lines[2]); n != "" {
					return n, true
				}
			}
			return "unknown", true
		}
	}
	for _, k := range []string{"X-Virus-Id", "X-Virus-Name"} {
		if n := cleanName(h.Get(k)); n != "" {
			return n, true
		}
	}
	return "", false
}

// cleanName trims a threat name, drops control characters and caps its
// length.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// ServiceOptions is what an ICAP service announced in its OPTIONS response
// (RFC 3507 §4.10.2).
type ServiceOptions struct {
	Methods []string `json:"methods"`
	Service string   `json:"service,omitempty"`
	ISTag   string   `json:"istag,omitempty"`
	// Preview is the preview size the server wants, -1 when it did not
	// offer previews.
	Preview  int  `json:"preview"`
	Allow204 bool `json:"allow_204"`
	// TTL is Options-TTL, 0 when absent.
	TTL time.Duration `json:"ttl"`
	// MaxConnections is Max-Connections, 0 when absent.
	MaxConnections int       `json:"max_connections,omitempty"`
	Fetched        time.Time `json:"fetched"`
}

// parseOptions validates an OPTIONS response and extracts the service's
// capabilities.
func parseOptions(r *icapResponse) (ServiceOptions, error, string) {
	if r.Code != 200 {
		kind := ErrProtocol
		switch {
		case r.Code >= 500:
			kind = ErrUnavailable
		case r.Code >= 400:
			kind = ErrScanFailed
		}
		return ServiceOptions{}, kind, fmt.Sprintf("OPTIONS: ICAP %d %s", r.Code, clip(r.Reason))
	}
	o := ServiceOptions{Preview: -1}
	for _, m := range strings.Split(r.get("Methods"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			o.Methods = append(o.Methods, strings.ToUpper(m))
		}
	}
	respmod := false
	for _, m := range o.Methods {
		respmod = respmod || m == "RESPMOD"
	}
	if !respmod {
		return o, ErrScanFailed, fmt.Sprintf("service does not offer RESPMOD (Methods: %q)", clip(r.get("Methods")))
	}
	o.Service = cleanName(r.get("Service"))
	o.ISTag = cleanName(r.get("Istag"))
	if v := r.get("Preview"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return o, ErrProtocol, fmt.Sprintf("bad Preview %q", clip(v))
		}
		o.Preview = n
	}
	for _, v := range strings.Split(r.get("Allow"), ",") {
		o.Allow204 = o.Allow204 || strings.TrimSpace(v) == "204"
	}
	if v := r.get("Options-Ttl"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return o, ErrProtocol, fmt.Sprintf("bad Options-TTL %q", clip(v))
		}
		o.TTL = time.Duration(min(n, 1<<30)) * time.Second
	}
	if v := r.get("Max-Connections"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return o, ErrProtocol, fmt.Sprintf("bad Max-Connections %q", clip(v))
		}
		o.MaxConnections = n
	}
	return o, nil, ""
}
