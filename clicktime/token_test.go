package clicktime

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	s := testSigner(t, "k1")
	for _, u := range []string{"https://example.org/", "http://a.example/p?q=1&r=%E6#frag", "https://x.example/" + strings.Repeat("a", MaxURLLen-19)} {
		tok := s.Token(u, "7ubt2krp4qj5dwoc")
		if n := tokenLen(u, "7ubt2krp4qj5dwoc", s); n != len(tok) {
			t.Fatalf("tokenLen %d, token has %d", n, len(tok))
		}
		got, ref, kid, err := s.Verify(tok)
		if err != nil || got != u || ref != "7ubt2krp4qj5dwoc" || kid != "k1" {
			t.Fatalf("Verify(Token(%q)) = %q, %q, %q, %v", u, got, ref, kid, err)
		}
		if strings.ContainsAny(tok, "+/=") {
			t.Fatalf("token %q is not base64url without padding", tok)
		}
	}
	// A long reference is cut, not refused.
	_, ref, _, err := s.Verify(s.Token("https://a.example/", strings.Repeat("r", 500)))
	if err != nil || len(ref) != MaxRefLen {
		t.Fatalf("long ref: %d bytes, %v", len(ref), err)
	}
}

func TestTokenTampering(t *testing.T) {
	s := testSigner(t, "k1")
	tok := s.Token("https://example.org/account", "m1")
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	// Every single bit flipped anywhere must be refused.
	for i := range raw {
		for bit := range 8 {
			b := bytes.Clone(raw)
			b[i] ^= 1 << bit
			_, _, _, err := s.Verify(base64.RawURLEncoding.EncodeToString(b))
			if err == nil {
				t.Fatalf("byte %d bit %d flipped: accepted", i, bit)
			}
			if !errors.Is(err, ErrBadMAC) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("byte %d bit %d: error %v is none of the three", i, bit, err)
			}
		}
	}
	// The URL swapped for another with the tag kept: bad MAC.
	forged := append([]byte{}, raw[:len(raw)-tagLen-len("account")]...)
	forged = append(forged, "evilxyz"...)
	forged = append(forged, raw[len(raw)-tagLen:]...)
	if _, _, _, err := s.Verify(base64.RawURLEncoding.EncodeToString(forged)); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("swapped URL: %v, want bad MAC", err)
	}
	// Truncated at every length.
	for n := 0; n < len(tok); n++ {
		if _, _, _, err := s.Verify(tok[:n]); err == nil {
			t.Fatalf("truncated to %d characters: accepted", n)
		}
	}
	for _, bad := range []string{"", "!!!!", tok + "A", strings.Repeat("A", maxTokenLen+1), "AQ", tok + "/x"} {
		if _, _, _, err := s.Verify(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestTokenUnknownKeyAndRotation(t *testing.T) {
	old := testSigner(t, "k1")
	rotated := testSigner(t, "k2", "k1")
	newOnly := testSigner(t, "k2")

	oldTok := old.Token("https://a.example/", "m")
	if _, _, kid, err := rotated.Verify(oldTok); err != nil || kid != "k1" {
		t.Fatalf("old key's token after rotation: %q, %v", kid, err)
	}
	newTok := rotated.Token("https://a.example/", "m")
	if _, _, kid, err := rotated.Verify(newTok); err != nil || kid != "k2" {
		t.Fatalf("new token: key %q, %v; only the first key signs", kid, err)
	}
	if rotated.SigningKeyID() != "k2" {
		t.Fatalf("signing key %q", rotated.SigningKeyID())
	}
	if _, _, _, err := old.Verify(newTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a key the verifier does not have: %v, want unknown key", err)
	}
	if _, _, _, err := newOnly.Verify(oldTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a removed key: %v, want unknown key", err)
	}
	// Same id, other secret: bad MAC, not accepted.
	other, _ := NewSigner([]Key{{ID: "k1", Secret: bytes.Repeat([]byte("z"), 32)}})
	if _, _, _, err := other.Verify(oldTok); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("other secret: %v", err)
	}
}

// A token that verifies still cannot redirect anywhere but http(s): a
// leaked key must not make the service an open redirector to javascript:.
func TestTokenTargetChecked(t *testing.T) {
	s := testSigner(t, "k1")
	for _, u := range []string{"javascript:alert(1)", "data:text/html,x", "https:///nohost", "http://a.example/\r\nSet-Cookie: x", "//a.example/"} {
		if _, _, _, err := s.Verify(s.Token(u, "m")); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want malformed", u, err)
		}
	}
}

func TestNewSignerRefuses(t *testing.T) {
	long := bytes.Repeat([]byte("s"), 32)
	for _, keys := range [][]Key{
		nil,
		{{ID: "", Secret: long}},
		{{ID: "a b", Secret: long}},
		{{ID: strings.Repeat("k", 33), Secret: long}},
		{{ID: "k", Secret: long[:31]}},
		{{ID: "k", Secret: long}, {ID: "k", Secret: long}},
	} {
		if _, err := NewSigner(keys); err == nil {
			t.Errorf("%v accepted", keys)
		}
	}
}
