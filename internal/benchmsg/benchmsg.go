// Package benchmsg builds the test messages of foxproxy's benchmarks: the
// messages bench/ sends through a running foxproxy, and the 10 KB one that
// package links measures extraction on, the same bytes in both.
package benchmsg

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
)

// Links are the links of every test message: eight URLs on seven registrable domains,
// in text and HTML, one of them behind a Google redirector that WRS unwraps.
// None is listed, so every message is delivered and every lookup is a
// (cached or not) negative answer, the common case.
var Links = []string{
	"https://www.shop.example.com/offers/winter?id=20261127&utm_source=news",
	"http://news.example.org/2026/11/27/product-update.html",
	"https://docs.example.io/guide/getting-started#install",
	"https://blog.example.co.uk/posts/what-we-shipped",
	"https://www.google.com/url?q=https://partner.example.biz/landing&sa=D",
	"https://cdn.images.example.net/c/2026/header.png",
	"https://support.example.com/tickets/new",
	"https://lists.example.net/unsubscribe?u=0123456789abcdef",
}

var words = strings.Fields(`the quick update on our product line this week covers new features
shipping dates pricing changes and a few fixes that customers asked for in the last month
please read the notes below and contact support if anything is unclear or looks wrong to you`)

// paragraph writes lines of about 72 characters of plain words until it
// has written n bytes or more.
func paragraph(b *bytes.Buffer, rng *rand.Rand, n int) {
	start := b.Len()
	line := 0
	for b.Len()-start < n {
		w := words[rng.IntN(len(words))]
		if line+len(w)+1 > 72 {
			b.WriteString("\r\n")
			line = 0
		} else if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\r\n")
}

// Build makes a realistic message of about size bytes on the wire
// (CRLF): a Received header as the local Postfix writes it (foxproxy reads
// the original client and queue ID from it), a multipart/alternative text
// and HTML body with the links, and, for sizes past 64 KB, a base64
// attachment of pseudo-random bytes filling the rest (mail of a megabyte
// is mostly an attachment).
func Build(size int) []byte {
	rng := rand.New(rand.NewPCG(uint64(size), 42))
	var b bytes.Buffer
	w := func(s string) { b.WriteString(s + "\r\n") }
	w("Received: from mail.example.net (mail.example.net [198.51.100.7])")
	w("\tby mx.example.test (Postfix) with ESMTPS id 4NbQ3k1x2Zz9sT")
	w("\tfor <rcpt@example.test>; Fri, 27 Nov 2026 14:00:00 +0000 (UTC)")
	w("From: Example News <news@example.net>")
	w("To: <rcpt@example.test>")
	w("Subject: Product update for November")
	w("Date: Fri, 27 Nov 2026 14:00:00 +0000")
	w("Message-ID: <bench-" + fmt.Sprint(size) + "@example.net>")
	w("MIME-Version: 1.0")
	attach := size > 64<<10
	if attach {
		w(`Content-Type: multipart/mixed; boundary="mixed-b0"`)
		w("")
		w("--mixed-b0")
	}
	w(`Content-Type: multipart/alternative; boundary="alt-b1"`)
	w("")
	w("This is a multi-part message in MIME format.")
	text := size/2 - 200
	if attach {
		text = 4 << 10
	}
	w("--alt-b1")
	w("Content-Type: text/plain; charset=utf-8")
	w("Content-Transfer-Encoding: 7bit")
	w("")
	per := text / (len(Links) + 1)
	for _, l := range Links {
		paragraph(&b, rng, per)
		w("See " + l)
		w("")
	}
	w("--alt-b1")
	w("Content-Type: text/html; charset=utf-8")
	w("Content-Transfer-Encoding: 7bit")
	w("")
	w(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Product update</title></head>`)
	w(`<body style="font-family:Arial,sans-serif"><table width="100%"><tr><td>`)
	w(`<img src="` + Links[5] + `" width="600" alt="Example">`)
	for i, l := range Links {
		w(`<p style="margin:0 0 12px">`)
		paragraph(&b, rng, per-120)
		w(fmt.Sprintf(`<a href="%s">Read more (%d)</a></p>`, l, i+1))
	}
	w(`</td></tr></table></body></html>`)
	w("--alt-b1--")
	if attach {
		w("--mixed-b0")
		w(`Content-Type: application/pdf; name="report.pdf"`)
		w("Content-Transfer-Encoding: base64")
		w(`Content-Disposition: attachment; filename="report.pdf"`)
		w("")
		// What is left, less the closing boundary, in 78-byte base64 lines
		// (76 characters and CRLF) of 57 bytes each.
		left := size - b.Len() - len("--mixed-b0--\r\n")
		raw := make([]byte, max(left, 0)/78*57)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		copy(raw, "%PDF-1.7\n")
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 76 {
			w(enc[:76])
			enc = enc[76:]
		}
		if enc != "" {
			w(enc)
		}
		w("--mixed-b0--")
	}
	return b.Bytes()
}
