package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode the charsets mail uses, not only UTF-8
)

// Bounds on what an entry's page reads of a stored message: the page is
// for looking, the .eml download is for everything.
const (
	maxShownHeaderBytes = 256 << 10
	maxShownTextBytes   = 1 << 20
	maxShownParts       = 100
	maxReadBytes        = 64 << 20
)

// headerField is one header field, its value decoded (RFC 2047) but
// still text.
type headerField struct {
	Name, Value string
}

// bodyPart is one MIME part as the entry page shows it.
type bodyPart struct {
	// Type is the part's media type; Note says how it is shown.
	Type, Note string
	// Text is the part's decoded text (HTML as its source); empty for
	// attachments.
	Text string
	Size int64
}

// messageView is a stored message as the entry page shows it.
type messageView struct {
	Header  []headerField
	Subject string
	From    string
	Parts   []bodyPart
	// Problem says what could not be read (the page shows what could).
	Problem string
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
	return message.CharsetReader(charset, input)
}}

// decodeHeader decodes RFC 2047 encoded words; a value that does not
// decode is shown as it came.
func decodeHeader(v string) string {
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		d = v
	}
	return printableText(d)
}

// printableText makes s valid UTF-8 and replaces control characters other
// than tab and newline, so that what is shown is what is there.
func printableText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' {
			return r
		}
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '\uFFFD'
		}
		return r
	}, s)
}

// viewMessage reads a stored message for display: its header fields,
// decoded, and its text parts as text. HTML parts are text too: their
// source, which html/template escapes like any other string.
func viewMessage(r io.Reader) messageView {
	var v messageView
	br := bufio.NewReader(io.LimitReader(r, maxReadBytes))
	// The header is read by go-message, but not beyond a bound.
	peek, _ := br.Peek(maxShownHeaderBytes)
	if !strings.Contains(string(peek), "\n\n") && !strings.Contains(string(peek), "\r\n\r\n") && len(peek) == maxShownHeaderBytes {
		v.Problem = fmt.Sprintf("the header is longer than %d bytes: not shown; download the .eml", maxShownHeaderBytes)
		return v
	}
	ent, err := message.Read(br)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		v.Problem = "the message cannot be read as MIME: " + err.Error()
		if ent == nil {
			return v
		}
	}
	fields := ent.Header.Fields()
	for fields.Next() {
		raw := fields.Value()
		v.Header = append(v.Header, headerField{Name: printableText(fields.Key()), Value: decodeHeader(raw)})
	}
	v.Subject = decodeHeader(ent.Header.Get("Subject"))
	v.From = decodeHeader(ent.Header.Get("From"))

	budget := int64(maxShownTextBytes)
	werr := ent.Walk(func(path []int, e *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if len(v.Parts) >= maxShownParts {
			return errTooManyParts
		}
		if e.MultipartReader() != nil {
			return nil // its parts follow
		}
		mt, params, _ := e.Header.ContentType()
		if mt == "" {
			mt = "text/plain"
		}
		disp, dparams, _ := e.Header.ContentDisposition()
		name := dparams["filename"]
		if name == "" {
			name = params["name"]
		}
		p := bodyPart{Type: printableText(mt)}
		isText := strings.HasPrefix(mt, "text/") || mt == "message/rfc822" || mt == "message/delivery-status"
		if !isText || disp == "attachment" {
			n, _ := io.Copy(io.Discard, e.Body)
			p.Size = n
			p.Note = "attachment"
			if name != "" {
				p.Note += " " + decodeHeader(name)
			}
			p.Note += fmt.Sprintf(", %d bytes: not shown", n)
			v.Parts = append(v.Parts, p)
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(e.Body, budget+1))
		n, _ := io.Copy(io.Discard, e.Body)
		p.Size = int64(len(b)) + n
		if int64(len(b)) > budget {
			b = b[:budget]
			p.Note = "cut: the page shows at most 1 MiB of text; "
		}
		budget -= int64(len(b))
		if mt == "text/html" {
			p.Note += "HTML, shown as its source; nothing in it is loaded or followed"
		} else {
			p.Note += "text"
		}
		if message.IsUnknownCharset(err) {
			p.Note += "; unknown charset " + params["charset"] + ", shown as it came"
		}
		p.Text = printableText(strings.ReplaceAll(toValidUTF8(b), "\r\n", "\n"))
		v.Parts = append(v.Parts, p)
		return nil
	})
	if errors.Is(werr, errTooManyParts) {
		v.Problem = fmt.Sprintf("more than %d parts: only the first are shown", maxShownParts)
	} else if werr != nil {
		v.Problem = "the message's MIME structure is broken: " + werr.Error() + "; the parts before are shown"
	}
	return v
}

var errTooManyParts = errors.New("too many parts")

func toValidUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
