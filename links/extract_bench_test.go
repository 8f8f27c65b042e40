package links

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// alternative10K builds the kind of mail most messages are: about 10 KB,
// multipart/alternative with a text and an HTML part carrying the same
// eight links (one behind a Google redirector), under a Postfix Received
// header; the message bench/ sends through foxproxy.
func alternative10K() []byte {
	links := []string{
		"https://www.shop.example.com/offers/winter?id=20261127&utm_source=news",
		"http://news.example.org/2026/11/27/product-update.html",
		"https://docs.example.io/guide/getting-started#install",
		"https://blog.example.co.uk/posts/what-we-shipped",
		"https://www.google.com/url?q=https://partner.example.biz/landing&sa=D",
		"https://cdn.images.example.net/c/2026/header.png",
		"https://support.example.com/tickets/new",
		"https://lists.example.net/unsubscribe?u=0123456789abcdef",
	}
	para := strings.Repeat("the quick update on our product line this week covers new features and\r\n", 7)
	var b strings.Builder
	b.WriteString("Received: from mail.example.net (mail.example.net [198.51.100.7])\r\n" +
		"\tby mx.example.test (Postfix) with ESMTPS id 4NbQ3k1x2Zz9sT\r\n" +
		"\tfor <rcpt@example.test>; Fri, 27 Nov 2026 14:00:00 +0000 (UTC)\r\n" +
		"From: Example News <news@example.net>\r\nTo: <rcpt@example.test>\r\nSubject: Product update\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt-b1\"\r\n\r\n" +
		"--alt-b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	for _, l := range links {
		b.WriteString(para + "See " + l + "\r\n\r\n")
	}
	b.WriteString("--alt-b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
		"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><table width=\"100%\"><tr><td>\r\n" +
		"<img src=\"" + links[5] + "\" width=\"600\" alt=\"Example\">\r\n")
	for i, l := range links {
		fmt.Fprintf(&b, "<p style=\"margin:0 0 12px\">%s<a href=\"%s\">Read more (%d)</a></p>\r\n", para, l, i+1)
	}
	b.WriteString("</td></tr></table></body></html>\r\n--alt-b1--\r\n")
	return []byte(b.String())
}

// BenchmarkExtractAlternative10K: extraction from a typical 10 KB
// text+HTML mail, where the per-message cost (buffers, readers, maps) weighs
// more than the per-byte cost of the 100 KB benchmarks.
func BenchmarkExtractAlternative10K(b *testing.B) {
	msg := alternative10K()
	x := mustNew(b, Config{Redirectors: DefaultRedirectors()})
	if n := len(x.Extract(strings.NewReader(string(msg))).URLs); n != 9 {
		b.Fatalf("%d URLs, want 9 (8 links and the redirector's target)", n)
	}
	benchExtract(b, msg)
}

// benchLinks are the eight links of bench/'s test messages.
var benchLinks = []string{
	"https://www.shop.example.com/offers/winter?id=20261127&utm_source=news",
	"http://news.example.org/2026/11/27/product-update.html",
	"https://docs.example.io/guide/getting-started#install",
	"https://blog.example.co.uk/posts/what-we-shipped",
	"https://www.google.com/url?q=https://partner.example.biz/landing&sa=D",
	"https://cdn.images.example.net/c/2026/header.png",
	"https://support.example.com/tickets/new",
	"https://lists.example.net/unsubscribe?u=0123456789abcdef",
}

// benchMessage10K is the 10 KB message bench/ sends through foxproxy (its
// buildMessage(10<<10), which the bench build tag keeps out of reach): the
// same headers, multipart/alternative structure, pseudo-random prose of
// the same seed and the eight links in text and HTML.
func benchMessage10K() []byte {
	const size = 10 << 10
	rng := rand.New(rand.NewPCG(uint64(size), 42))
	words := strings.Fields(`the quick update on our product line this week covers new features
shipping dates pricing changes and a few fixes that customers asked for in the last month
please read the notes below and contact support if anything is unclear or looks wrong to you`)
	var b bytes.Buffer
	w := func(s string) { b.WriteString(s + "\r\n") }
	paragraph := func(n int) {
		start, line := b.Len(), 0
		for b.Len()-start < n {
			word := words[rng.IntN(len(words))]
			if line+len(word)+1 > 72 {
				b.WriteString("\r\n")
				line = 0
			} else if line > 0 {
				b.WriteByte(' ')
				line++
			}
			b.WriteString(word)
			line += len(word)
		}
		b.WriteString("\r\n")
	}
	w("Received: from mail.example.net (mail.example.net [198.51.100.7])")
	w("\tby mx.example.test (Postfix) with ESMTPS id 4NbQ3k1x2Zz9sT")
	w("\tfor <rcpt@example.test>; Fri, 27 Nov 2026 14:00:00 +0000 (UTC)")
	w("From: Example News <news@example.net>")
	w("To: <rcpt@example.test>")
	w("Subject: Product update for November")
	w("Date: Fri, 27 Nov 2026 14:00:00 +0000")
	w("Message-ID: <bench-" + fmt.Sprint(size) + "@example.net>")
	w("MIME-Version: 1.0")
	w(`Content-Type: multipart/alternative; boundary="alt-b1"`)
	w("")
	w("This is a multi-part message in MIME format.")
	per := (size/2 - 200) / (len(benchLinks) + 1)
	w("--alt-b1")
	w("Content-Type: text/plain; charset=utf-8")
	w("Content-Transfer-Encoding: 7bit")
	w("")
	for _, l := range benchLinks {
		paragraph(per)
		w("See " + l)
		w("")
	}
	w("--alt-b1")
	w("Content-Type: text/html; charset=utf-8")
	w("Content-Transfer-Encoding: 7bit")
	w("")
	w(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Product update</title></head>`)
	w(`<body style="font-family:Arial,sans-serif"><table width="100%"><tr><td>`)
	w(`<img src="` + benchLinks[5] + `" width="600" alt="Example">`)
	for i, l := range benchLinks {
		w(`<p style="margin:0 0 12px">`)
		paragraph(per - 120)
		w(fmt.Sprintf(`<a href="%s">Read more (%d)</a></p>`, l, i+1))
	}
	w(`</td></tr></table></body></html>`)
	w("--alt-b1--")
	return b.Bytes()
}

// BenchmarkExtractBench10K: extraction from exactly the 10 KB message with
// eight links that bench/ sends (issue 21's "link extraction" target).
func BenchmarkExtractBench10K(b *testing.B) {
	msg := benchMessage10K()
	x := mustNew(b, Config{Redirectors: DefaultRedirectors()})
	if n := len(x.Extract(bytes.NewReader(msg)).URLs); n != 9 {
		b.Fatalf("%d URLs, want 9 (8 links and the redirector's target)", n)
	}
	benchExtract(b, msg)
}
