package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
)

// Version is foxproxy's version, set by the build (-ldflags -X); the trace
// header names it.
var Version = "0.1.0-dev"

// Header is the header lines foxproxy puts on top of a message it
// delivers: the X-Foxproxy trace header (who handled the message, what
// each stage found, which rule decided), then the header fields the
// verdict adds. It is the only change foxproxy makes to a delivered
// message besides the verdict's changes to its content (ApplyVerdict).
//
// notes are what foxproxy did to the message besides (links rewritten,
// decrypted, encrypted), each a key=value token.
func Header(host, id string, v policy.Verdict, findings []pipeline.Finding, notes ...string) string {
	var b strings.Builder
	b.WriteString(traceHeader(host, id, v, findings, notes...))
	for _, h := range v.Headers {
		b.WriteString(FoldHeader(h.Name, []string{PrintableText(h.Value)}))
	}
	return b.String()
}

// traceHeader renders the X-Foxproxy header.
func traceHeader(host, id string, v policy.Verdict, findings []pipeline.Finding, notes ...string) string {
	parts := []string{"foxproxy/" + Version, "host=" + host, "id=" + id}
	for _, f := range findings {
		parts = append(parts, f.Trace())
	}
	parts = append(parts, "verdict="+string(v.Action), "rule="+pipeline.TraceToken(v.Rule))
	for _, n := range notes {
		if k, val, ok := strings.Cut(n, "="); ok {
			parts = append(parts, pipeline.TraceToken(k)+"="+pipeline.TraceToken(val))
		}
	}
	return FoldHeader("X-Foxproxy", parts)
}

// FoldHeader renders a header field: name, then parts joined with "; ",
// folded (RFC 5322 §2.2.3) so no line is longer than 78 characters where
// the parts allow it, ending in CRLF.
func FoldHeader(name string, parts []string) string {
	var b strings.Builder
	b.WriteString(name + ":")
	lineLen := b.Len()
	for i, p := range parts {
		sep := " "
		if i > 0 {
			b.WriteString(";")
			lineLen++
		}
		if lineLen+len(sep)+len(p) > 78 && i > 0 {
			b.WriteString("\r\n\t")
			lineLen = 1
			sep = ""
		}
		b.WriteString(sep + p)
		lineLen += len(sep) + len(p)
	}
	b.WriteString("\r\n")
	return b.String()
}

// PrintableText makes a text safe as (part of) a header field value or
// the text of an SMTP reply line: printable ASCII only, so it can neither
// end the field or line nor start another, and at most 400 bytes.
func PrintableText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
	if len(s) > 400 {
		s = s[:400]
	}
	return strings.TrimSpace(s)
}

var headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// prefixSubject puts prefix in front of the message's Subject (a tag
// verdict), or adds a Subject when there is none. Only the header block,
// read up to limit bytes, is touched; the body streams through as is.
func prefixSubject(r io.Reader, prefix string, limit int64) io.Reader {
	br := bufio.NewReader(r)
	var head bytes.Buffer
	found := false
	inLine := false // the last read ended inside a line longer than the buffer
	for int64(head.Len()) < limit {
		line, err := br.ReadSlice('\n')
		start := !inLine
		inLine = errors.Is(err, bufio.ErrBufferFull)
		// A Subject line may be longer than the buffer: its first part
		// starts with the field name.
		if start && !found && len(line) >= 8 && bytes.EqualFold(line[:8], []byte("subject:")) {
			rest := bytes.TrimLeft(line[8:], " \t")
			line = append([]byte("Subject: "+prefix), rest...)
			found = true
		}
		if inLine || !start {
			// A part of a very long header line: copy it on.
			head.Write(line)
			if err != nil && !inLine {
				break
			}
			continue
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			if !found {
				head.WriteString("Subject: " + strings.TrimSpace(prefix) + "\r\n")
				found = true
			}
			head.Write(line)
			break
		}
		head.Write(line)
		if err != nil {
			break
		}
	}
	return io.MultiReader(&head, br)
}
