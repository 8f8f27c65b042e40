package testutil

import (
	"bytes"
	"strings"
)

// CRLFClean turns every bare CR or LF (and NUL) into a space and ends with
// CRLF: fuzz input made into content the guard lets through.
func CRLFClean(b []byte) []byte {
	out := bytes.ReplaceAll(b, []byte("\r\n"), []byte{0xff, 0xfe})
	out = bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, out)
	out = bytes.ReplaceAll(out, []byte{0xff, 0xfe}, []byte("\r\n"))
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return out
}

// HeaderSeeds are message heads as Postfix hands them over, and near
// misses: fuzz seeds for the header readers.
var HeaderSeeds = []string{
	"Received: from helo.example (client.example [192.0.2.1])\r\n\tby mx.example.test (Postfix) with ESMTP id 4ABCDEF\r\n\tfor <rcpt@example.test>; Fri, 27 Nov 2026 14:00:00 +0000 (UTC)\r\nSubject: hi\r\n\r\nbody\r\n",
	"Received: from [IPv6:2001:db8::1] (unknown [IPv6:2001:db8::1])\r\n by mx (Postfix) with ESMTPS id 4XyZ\r\nSubject: x\r\n\r\n",
	"Received: from a (b [999.1.1.1]) by c (Postfix) with SMTP id !!\r\n\r\n",
	"subject:   lower case\r\nX: y\r\n\r\nbody",
	"Subject: " + strings.Repeat("long ", 1200) + "\r\n\r\nbody\r\n",
	"X-No-Subject: 1\r\n\r\n",
	"Subject: folded\r\n continued\r\n\r\nbody\r\n",
	"no header at all",
	"\r\n\r\nempty header",
}

// TinyMessage is a short plain-text mail with a Postfix Received header,
// about 400 bytes: the per-message cost of the SMTP path without content
// cost.
const TinyMessage = "Received: from mail.example.net (mail.example.net [198.51.100.7])\r\n" +
	"\tby mx.example.test (Postfix) with ESMTPS id 4NbQ3k1x2Zz9sT\r\n" +
	"\tfor <rcpt@example.test>; Fri, 27 Nov 2026 14:00:00 +0000 (UTC)\r\n" +
	"From: <sender@example.net>\r\n" +
	"To: <rcpt@example.test>\r\n" +
	"Subject: hello\r\n" +
	"Date: Fri, 27 Nov 2026 14:00:00 +0000\r\n" +
	"Message-ID: <tiny@example.net>\r\n" +
	"\r\n" +
	"Hello, this is a tiny message.\r\n"
