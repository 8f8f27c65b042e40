package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

// FuzzReceivedHeader feeds message heads to the reader that finds the
// original client and the upstream queue ID in Postfix's Received header
// (used when a trusted upstream sent no XFORWARD). It must never panic,
// and what it finds must be usable as is: an address, a name without
// white space, a queue ID of letters and digits.
func FuzzReceivedHeader(f *testing.F) {
	for _, s := range testutil.HeaderSeeds {
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
