package proxy

import (
	"bytes"
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
