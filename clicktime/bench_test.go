package clicktime

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// benchMessage is a newsletter of about 100 KB: multipart/alternative with
// a quoted-printable text part and a quoted-printable HTML part, 150 links.
func benchMessage() []byte {
	var h strings.Builder
	h.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>td{padding:4px}</style></head><body><table>\n")
	var p strings.Builder
	for i := 0; h.Len() < 90_000; i++ {
		if i < 150 {
			fmt.Fprintf(&h, "<tr><td class=\"item\" style=\"font-family:Arial\"><a href=\"https://shop.example/item/%d?utm_source=news&amp;utm_medium=email\">Item %d</a> Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</td></tr>\n", i, i)
			fmt.Fprintf(&p, "Item %d: https://shop.example/item/%d?utm_source=news\n", i, i)
		} else {
			h.WriteString("<tr><td class=\"item\" style=\"font-family:Arial\">Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip.</td></tr>\n")
		}
	}
	h.WriteString("</table></body></html>\n")
	return []byte(hdr + "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		string(encodeQP([]byte(crlf(h.String())))) + "\r\n--alt--\r\n")
}

func BenchmarkRewrite100KHTML(b *testing.B) {
	msg := benchMessage()
	r, err := NewRewriter(RewriterConfig{BaseURL: testBase, Signer: testSigner(b, "k1")})
	if err != nil {
		b.Fatal(err)
	}
	res, err := r.Rewrite("m", bytes.NewReader(msg), io.Discard)
	if err != nil || res.Rewritten != 150 {
		b.Fatalf("%+v %v", res, err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r.Rewrite("m", bytes.NewReader(msg), io.Discard)
	}
}
