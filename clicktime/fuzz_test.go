package clicktime

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRewrite: no panic; an error writes nothing; nothing rewritten means
// nothing changed; every click URL written verifies; and what go-message
// could read before it can still read, with as many parts.
func FuzzRewrite(f *testing.F) {
	for _, tc := range rewriteCases() {
		f.Add(join(tc.pieces))
	}
	f.Add([]byte("Content-Type: text/html\r\n\r\n<a href='http://a.example/'<a href=\"https://b.example/\">"))
	s := testSigner(f, "k1")
	r, err := NewRewriter(RewriterConfig{BaseURL: testBase, Signer: s, MaxLinks: 50})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// foxproxy refuses bare CR and LF (SMTP smuggling), so a message
		// it rewrites has CRLF line ends only; with mixed ones go-message
		// and the rewriter may well see different MIME structures.
		in = toCRLF(in)
		var out bytes.Buffer
		res, err := r.Rewrite("ref", bytes.NewReader(in), &out)
		if err != nil {
			if out.Len() > 0 {
				t.Fatal("output despite an error")
			}
			return
		}
		if res.Rewritten == 0 && !bytes.Equal(in, out.Bytes()) {
			t.Fatal("nothing rewritten, but the message changed")
		}
		if res.Rewritten > 50 {
			t.Fatalf("%d links rewritten past the cap", res.Rewritten)
		}
		pin, err := parseAll(bytes.NewReader(in), 0)
		if err != nil {
			return
		}
		pout, err := parseAll(bytes.NewReader(out.Bytes()), 0)
		if err != nil {
			t.Fatalf("input parses, output does not: %v", err)
		}
		if len(pin) != len(pout) {
			t.Fatalf("%d parts became %d", len(pin), len(pout))
		}
		for i := range pout {
			for _, m := range tokenRE.FindAllStringSubmatch(pout[i], -1) {
				if strings.Contains(pin[i], m[0]) {
					continue
				}
				if _, _, _, err := s.Verify(m[1]); err != nil {
					t.Fatalf("written token does not verify: %v", err)
				}
			}
		}
	})
}

func toCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case b[i] == '\r' || b[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}
