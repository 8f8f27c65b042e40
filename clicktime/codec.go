package clicktime

import (
	"bytes"
	"encoding/base64"
	"mime/quotedprintable"
)

// decodeQP decodes quoted-printable (RFC 2045 §6.7) leniently, as mail
// clients do: "=" not followed by two hex digits or a line break is kept
// as it is (mime/quotedprintable gives up instead), and white space at the
// end of a line is dropped (rule 3).
func decodeQP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	keep := 0 // out[:keep] is not trailing white space of the line
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '=':
			if i+2 < len(b) && unhex(b[i+1]) >= 0 && unhex(b[i+2]) >= 0 {
				out = append(out, byte(unhex(b[i+1])<<4|unhex(b[i+2])))
				keep = len(out)
				i += 3
				continue
			}
			j := i + 1
			for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
				j++
			}
			switch {
			case j == len(b):
				i = j // a soft break at the very end
			case b[j] == '\n':
				i = j + 1
			case b[j] == '\r' && j+1 < len(b) && b[j+1] == '\n':
				i = j + 2
			default:
				out = append(out, '=')
				keep = len(out)
				i++
			}
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n', c == '\n':
			out = out[:keep]
			if c == '\r' {
				out = append(out, '\r')
				i++
			}
			out = append(out, '\n')
			keep = len(out)
			i++
		case c == ' ' || c == '\t':
			out = append(out, c)
			i++
		default:
			out = append(out, c)
			keep = len(out)
			i++
		}
	}
	return out[:keep]
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	}
	return -1
}

// encodeQP encodes text as quoted-printable with CRLF line breaks and soft
// breaks at 76 columns (mime/quotedprintable's writer, text mode).
func encodeQP(text []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(text) + len(text)/8)
	w := quotedprintable.NewWriter(&buf)
	w.Write(text)
	w.Close()
	return buf.Bytes()
}

// decodeBase64 decodes a base64 body, skipping line breaks and anything
// else outside the alphabet (RFC 2045 §6.8: "must be ignored").
func decodeBase64(b []byte) ([]byte, bool) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
			clean = append(clean, c)
		}
	}
	if i := bytes.IndexByte(clean, '='); i >= 0 {
		// Data after the padding is not base64 any more; keep what the
		// padding ends.
		end := i
		for end < len(clean) && clean[end] == '=' {
			end++
		}
		clean = clean[:end]
	}
	clean = bytes.TrimRight(clean, "=")
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		return nil, false
	}
	return out[:n], true
}

// encodeBase64 encodes data in lines of lineLen characters with CRLF
// between them, and after the last when finalNewline is set.
func encodeBase64(data []byte, lineLen int, finalNewline bool) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	out := make([]byte, 0, len(enc)+len(enc)/lineLen*2+2)
	for len(enc) > lineLen {
		out = append(out, enc[:lineLen]...)
		out = append(out, '\r', '\n')
		enc = enc[lineLen:]
	}
	out = append(out, enc...)
	if finalNewline {
		out = append(out, '\r', '\n')
	}
	return out
}

// base64LineLen is the line length of an encoded body: that of its first
// line when it is a sensible one (a multiple of 4 up to RFC 2045's 76),
// else 76.
func base64LineLen(raw []byte) int {
	first := raw
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		first = bytes.TrimRight(raw[:i], "\r")
	} else {
		return 76
	}
	if n := len(first); n >= 4 && n <= 76 && n%4 == 0 {
		return n
	}
	return 76
}

func endsWithNewline(b []byte) bool { return len(b) > 0 && b[len(b)-1] == '\n' }
