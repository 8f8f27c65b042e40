package proxy

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// headerSeeds are message heads as Postfix hands them over, and near
// misses.
var headerSeeds = []string{
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

// FuzzReceivedHeader feeds message heads to the reader that finds the
// original client and the upstream queue ID in Postfix's Received header
// (used when a trusted upstream sent no XFORWARD). It must never panic,
// and what it finds must be usable as is: an address, a name without
// white space, a queue ID of letters and digits.
func FuzzReceivedHeader(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, name, qid := fromReceived(topReceived(bytes.NewReader(data), 64<<10))
		if client.IsValid() && (client.Is4In6() || client.Zone() != "") {
			t.Fatalf("client %v", client)
		}
		if !client.IsValid() && name != "" {
			t.Fatalf("a name %q without an address", name)
		}
		if strings.ContainsAny(name, " \t\r\n") {
			t.Fatalf("name %q", name)
		}
		for _, c := range qid {
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				t.Fatalf("queue ID %q", qid)
			}
		}
	})
}

// FuzzPrefixSubject checks the subject rewrite of a tag verdict: the body
// streams through unchanged, nothing of the message is lost, and the
// header ends up with exactly one Subject, carrying the prefix.
func FuzzPrefixSubject(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		// Only well-formed heads: CRLF lines, a blank line, within limit.
		head, body, ok := splitHead(data)
		if !ok || len(head)+2 > limit || strings.ContainsAny(head, "\x00") ||
			strings.ContainsAny(strings.ReplaceAll(head, "\r\n", ""), "\r\n") {
			return
		}
		if subjectLines(head) > 1 {
			return // a message with two Subjects is not this property's
		}
		out, err := io.ReadAll(prefixSubject(bytes.NewReader(data), "[TAG] ", limit))
		if err != nil {
			t.Fatal(err)
		}
		ohead, obody, ok := splitHead(out)
		if !ok || obody != body {
			t.Fatalf("body changed:\n in %q\nout %q", data, out)
		}
		if n := subjectLines(ohead); n != 1 || !strings.HasPrefix(ohead, "Subject: [TAG]") && !strings.Contains(ohead, "\r\nSubject: [TAG]") {
			t.Fatalf("%d Subject lines after the rewrite, or none with the prefix:\n in %q\nout %q", n, head, ohead)
		}
		if len(out) < len(data) {
			t.Fatalf("%d bytes out of %d in", len(out), len(data))
		}
	})
}

// splitHead splits a message at the blank line that ends its header.
func splitHead(b []byte) (head, body string, ok bool) {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return "", string(b[2:]), true
	}
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return "", "", false
	}
	return string(b[:i+2]), string(b[i+4:]), true
}

// subjectLines counts the header lines that start a Subject field.
func subjectLines(head string) int {
	n := 0
	for _, l := range strings.Split(head, "\r\n") {
		if len(l) >= 8 && strings.EqualFold(l[:8], "subject:") {
			n++
		}
	}
	return n
}

// Regression (issue 9, found by FuzzPrefixSubject): a Subject line longer
// than the reader's 4 KiB buffer was not recognised, so a tag verdict
// added a second Subject after the untagged one (mail readers show the
// first); and a long line whose CRLF fell just past the buffer read as the
// end of the header, so a later Subject was not tagged either.
func TestPrefixSubjectLongLines(t *testing.T) {
	long := "Subject: " + strings.Repeat("x", 6000) + "\r\n"
	boundary := "X-Long: " + strings.Repeat("y", 4096-len("X-Long: ")) + "\r\n" // CRLF right after 4096 bytes
	for name, msg := range map[string]string{
		"long subject":           "From: a@example.test\r\n" + long + "\r\nbody\r\n",
		"CRLF past the buffer":   boundary + "Subject: short\r\n\r\nbody\r\n",
		"long subject, boundary": boundary + long + "\r\nbody\r\n",
	} {
		out, err := io.ReadAll(prefixSubject(strings.NewReader(msg), "[SPAM] ", 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		head, body, ok := splitHead(out)
		if !ok || body != "body\r\n" || subjectLines(head) != 1 || !strings.Contains("\r\n"+head, "\r\nSubject: [SPAM] ") {
			t.Errorf("%s: %d Subject lines, body %q:\n%.300q", name, subjectLines(head), body, head)
		}
	}
}
