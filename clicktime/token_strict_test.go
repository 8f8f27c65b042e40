package clicktime

import (
	"net/http"
	"testing"
)

// The last character of a token carries padding bits when the payload's
// length is not a multiple of three: every other value of it, including the
// ones that differ only there, is refused, by Verify and with 400 by the
// handler.
func TestTokenLastCharacterStrict(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	s := testSigner(t, "k1")
	h, _, _ := newTestHandler(t, fakeChecker{}, "")
	padBits := map[int]bool{}
	for _, u := range []string{"https://example.org/a", "https://example.org/ab", "https://example.org/abc"} {
		tok := s.Token(u, "m1")
		padBits[len(tok)%4] = true
		for _, c := range alphabet {
			alt := tok[:len(tok)-1] + string(c)
			_, _, _, err := s.Verify(alt)
			if alt == tok {
				if err != nil {
					t.Fatalf("original token refused: %v", err)
				}
				if r := get(h, "/c/"+alt); r.StatusCode != http.StatusFound {
					t.Fatalf("original token: %d", r.StatusCode)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s: last character %q for %q verifies", u, c, tok[len(tok)-1])
			}
			if r := get(h, "/c/"+alt); r.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: last character %q for %q: %d, want 400", u, c, tok[len(tok)-1], r.StatusCode)
			}
		}
	}
	// Both kinds of padding (2 and 4 bits) and none were tried.
	if len(padBits) != 3 {
		t.Fatalf("token lengths mod 4 covered: %v", padBits)
	}
}
