package links

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/internal/benchmsg"
)

// alternative10K builds the kind of mail most messages are: about 10 KB,
// multipart/alternative with a text and an HTML part carrying the same
// eight links (one behind a Google redirector), under a Postfix Received
// header; the message bench/ sends through foxproxy.
func alternative10K() []byte {
	links := benchmsg.Links
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

// benchMessage10K is the 10 KB message bench/ sends through foxproxy: the
// same headers, multipart/alternative structure, pseudo-random prose of the
// same seed and the eight links in text and HTML.
func benchMessage10K() []byte { return benchmsg.Build(10 << 10) }

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
